"""The contract-triage pipeline (scripts/contract_triage.rhai) written the usual way in
Python: the official openai SDK, jsonschema, asyncio, the same prompts, schemas and routing
rules. The `long` benchmark runs it beside `hybrid` against the same loopback model server,
to compare CPU per document. It has no egress guard and no audit log: hybrid does more.

    python3 benches/python/contract_triage.py DOCS_DIR --base-url URL --jobs N --out FILE
"""

import argparse
import asyncio
import json
import os
import sys

import jsonschema
from openai import AsyncOpenAI

ESCALATE_BELOW = 0.75
MULTI_PARTY = 3
ESCALATING_FLAGS = {"unusual_indemnification", "ambiguous_jurisdiction", "missing_liability_cap"}
MAX_LOCAL_CHARS = 12000

TRIAGE_SYSTEM = (
    "You are a contract analyst. Classify the contract, list its parties, state the governing "
    'law ("ambiguous" if none or several), flag risks, and rate your confidence from 0 to 1. '
    "Answer in JSON only."
)
RISK_SYSTEM = (
    "You are a senior contracts lawyer. You receive the structured triage of a contract (not "
    "the contract itself). Assess the overall risk and recommend an action. Answer in JSON only."
)


def excerpt(text, max_chars):
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    last = cut.rfind(" ", max_chars // 2)
    if last > 0:
        cut = cut[:last]
    return cut + "…"


def load_schema(root, name):
    with open(os.path.join(root, "schemas", name + ".json"), encoding="utf-8") as f:
        schema = json.load(f)
    schema.pop("$schema", None)
    return schema


async def ask(client, model, system, user, schema_name, schema, validator, max_tokens=None):
    kwargs = {}
    if max_tokens:
        kwargs["max_completion_tokens"] = max_tokens
    response = await client.chat.completions.create(
        model=model,
        messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": schema_name, "strict": True, "schema": schema},
        },
        **kwargs,
    )
    value = json.loads(response.choices[0].message.content)
    validator.validate(value)
    return value


async def process(client, schemas, path):
    name = os.path.basename(path)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    (triage_schema, triage_validator), (risk_schema, risk_validator) = schemas
    try:
        triage = await ask(
            client, "local", TRIAGE_SYSTEM,
            "Contract `" + name + "`:\n\n" + excerpt(text, MAX_LOCAL_CHARS),
            "contract_triage", triage_schema, triage_validator, max_tokens=700,
        )
    except Exception as e:  # noqa: BLE001 - any failure goes to a person
        return {"id": path, "decision": "human_review", "reasons": ["local " + type(e).__name__]}
    reasons = []
    if triage["confidence_score"] < ESCALATE_BELOW:
        reasons.append("confidence below threshold")
    if len(triage["parties"]) >= MULTI_PARTY:
        reasons.append("multi-party")
    for flag in triage["risk_flags"]:
        if flag in ESCALATING_FLAGS:
            reasons.append("flag " + flag)
    if triage["escalate_to_cloud"]:
        reasons.append("model asked")
    if not reasons:
        return {"id": path, "decision": "local", "reasons": reasons, "triage": triage}
    try:
        risk = await ask(
            client, "gpt-5.4", RISK_SYSTEM, json.dumps(triage, indent=2, ensure_ascii=False),
            "contract_risk", risk_schema, risk_validator,
        )
        return {"id": path, "decision": "cloud", "reasons": reasons, "triage": triage, "risk": risk}
    except Exception as e:  # noqa: BLE001
        return {"id": path, "decision": "human_review", "reasons": reasons + ["cloud " + type(e).__name__], "triage": triage}


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("docs")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", required=True)
    parser.add_argument("--root", default=os.path.join(os.path.dirname(__file__), "..", ".."))
    args = parser.parse_args()

    schemas = []
    for name in ("contract_triage", "contract_risk"):
        schema = load_schema(args.root, name)
        schemas.append((schema, jsonschema.Draft202012Validator(schema)))
    client = AsyncOpenAI(base_url=args.base_url, api_key="sk-bench", max_retries=0)
    paths = sorted(os.path.join(args.docs, n) for n in os.listdir(args.docs) if not n.startswith("."))
    gate = asyncio.Semaphore(args.jobs)

    async def one(path):
        async with gate:
            return await process(client, schemas, path)

    with open(args.out, "w", encoding="utf-8") as out:
        for record in await asyncio.gather(*(one(p) for p in paths)):
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    await client.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
