//! Scans and photos as documents: page images read on this machine, handed to local() as
//! image parts, stopped on their way to the cloud.

use std::io::Cursor;
use std::time::Duration;

use serde_json::Value;

use crate::openai_stub::{Reply, StubServer};
use crate::support::{audit_lines, read_records, Project};

fn png(width: u32, height: u32, shade: u8) -> Vec<u8> {
    let img = image::GrayImage::from_fn(width, height, |x, y| {
        image::Luma([shade.wrapping_add(((x * 7 + y * 3) % 40) as u8)])
    });
    let mut out = Vec::new();
    image::DynamicImage::ImageLuma8(img)
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// A multi-page TIFF as a multifunction printer writes one: 8-bit grey pages.
fn tiff(pages: &[(u32, u32)]) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    let mut encoder = tiff::encoder::TiffEncoder::new(&mut out).unwrap();
    for (n, (w, h)) in pages.iter().enumerate() {
        let pixels: Vec<u8> = (0..w * h)
            .map(|i| ((i as usize + n * 50) % 256) as u8)
            .collect();
        encoder
            .write_image::<tiff::encoder::colortype::Gray8>(*w, *h, &pixels)
            .unwrap();
    }
    out.into_inner()
}

const SCRIPT: &str = r#"
fn process(doc) {
    let read = local(#{ prompt: "Transcribe this scanned page.", images: doc.images, max_tokens: 20 });
    let first = doc.images[0];
    let sent = "sent";
    try {
        cloud(#{ prompt: "summarise", images: doc.images });
    } catch (e) {
        sent = e.kind + ":" + e.rule;
    }
    #{ pages: doc.images.len(), page: first.page, width: first.width, height: first.height,
       read: read, cloud: sent, text: doc.text }
}
"#;

#[test]
fn scans_and_photos_become_page_images_that_reach_local_and_never_the_cloud() {
    let p = Project::new();
    p.write("scripts/s.rhai", SCRIPT);
    p.write("hybrid.toml", "[limits]\nmax_image_pixels = 1000000\n");
    p.write("in/photo.png", png(1800, 500, 60));
    p.write("in/scan.tiff", tiff(&[(300, 400), (300, 400), (200, 100)]));
    p.write("in/huge.png", png(1200, 1000, 10));
    p.write("in/broken.jpg", b"\xff\xd8\xff\xe0 not really a jpeg");
    // A scanned PDF (its one page an image), a mixed one (a text page, a scanned page), and
    // a photo sent by e-mail.
    p.write("in/scan.pdf", crate::support::make_image_pdf());
    p.write(
        "in/mixed.pdf",
        crate::support::make_mixed_pdf("Clausula de pago a 30 dias"),
    );
    use base64::Engine;
    let attached = base64::engine::general_purpose::STANDARD.encode(png(40, 30, 200));
    p.write(
        "in/mail.eml",
        format!("From: ana@example.co\r\nSubject: foto del contrato\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nAdjunto la foto.\r\n--b\r\nContent-Type: image/png; name=\"foto.png\"\r\nContent-Disposition: attachment; filename=\"foto.png\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{attached}\r\n--b--\r\n"),
    );
    let local = StubServer::start(|_, _| Reply::content("texto del contrato"));
    let cloud = StubServer::conforming(Duration::ZERO);
    let (lu, cu) = (local.url(), cloud.url());
    p.hybrid(&[
        "run",
        "scripts/s.rhai",
        "in",
        "--out",
        "r.jsonl",
        "--local-url",
        &lu,
        "--cloud-url",
        &cu,
        "--cache",
        "off",
        "--audit",
        "audit.jsonl",
    ])
    .output()
    .expect_code(2);
    let records = read_records(&p.path("r.jsonl"));
    let record = |id: &str| records.iter().find(|r| r["id"] == id).unwrap().clone();

    let photo = record("in/photo.png");
    assert_eq!(photo["ok"], true, "{photo}");
    assert_eq!(photo["result"]["pages"], 1);
    // Scaled to what models take, aspect kept.
    assert_eq!(photo["result"]["width"], 896);
    assert_eq!(photo["result"]["height"], 249);
    assert_eq!(photo["result"]["read"], "texto del contrato");
    let scan = record("in/scan.tiff");
    assert_eq!(scan["result"]["pages"], 3, "{scan}");
    assert_eq!(scan["result"]["page"], 1);
    assert_eq!(
        (
            scan["result"]["width"].clone(),
            scan["result"]["height"].clone()
        ),
        (300.into(), 400.into())
    );

    // A scanned PDF page is drawn at the size models take (US Letter: 692 × 896).
    let pdf = record("in/scan.pdf");
    assert_eq!(pdf["result"]["pages"], 1, "{pdf}");
    assert_eq!(
        (
            pdf["result"]["width"].clone(),
            pdf["result"]["height"].clone()
        ),
        (692.into(), 896.into())
    );
    let mixed = record("in/mixed.pdf");
    assert_eq!(mixed["result"]["pages"], 1, "{mixed}");
    assert_eq!(
        mixed["result"]["page"], 2,
        "the scanned page keeps its number"
    );
    assert_eq!(
        (
            mixed["result"]["width"].clone(),
            mixed["result"]["height"].clone()
        ),
        (692.into(), 896.into())
    );
    assert!(
        mixed["result"]["text"]
            .as_str()
            .unwrap()
            .contains("Clausula de pago"),
        "{mixed}"
    );
    let mail = record("in/mail.eml");
    assert_eq!(mail["result"]["pages"], 1, "{mail}");
    assert!(mail["result"]["text"]
        .as_str()
        .unwrap()
        .contains("Adjunto la foto."));

    // local() got every page as an image part, after the prompt.
    let requests = local.requests();
    assert_eq!(requests.len(), 5, "one call per readable document");
    let parts: Vec<usize> = requests
        .iter()
        .map(|r| {
            let content = r.body["messages"][0]["content"].as_array().unwrap();
            assert_eq!(content[0]["type"], "text");
            content
                .iter()
                .filter(|c| {
                    c["type"] == "image_url"
                        && c["image_url"]["url"]
                            .as_str()
                            .unwrap()
                            .starts_with("data:image/png;base64,")
                })
                .count()
        })
        .collect();
    let mut parts = parts;
    parts.sort();
    assert_eq!(parts, [1, 1, 1, 1, 3]);

    // The cloud saw nothing: each attempt was blocked by rule `image`, audited by hash.
    assert_eq!(cloud.requests().len(), 0);
    assert_eq!(photo["result"]["cloud"], "blocked:image");
    let audit = audit_lines(&p.path("audit.jsonl"));
    let blocked: Vec<&Value> = audit.iter().filter(|a| a["rule"] == "image").collect();
    assert_eq!(blocked.len(), 5, "{audit:?}");
    let scan_audit = blocked
        .iter()
        .find(|a| a["document"] == "in/scan.tiff")
        .unwrap();
    assert_eq!(scan_audit["images"].as_array().unwrap().len(), 3);
    assert!(scan_audit["images"][0].as_str().unwrap().len() == 64);
    let text = std::fs::read_to_string(p.path("audit.jsonl")).unwrap();
    assert!(!text.contains("base64,"), "no image bytes in the audit log");

    // Too big and broken images are error records with their reason.
    let huge = record("in/huge.png");
    assert_eq!(huge["error"]["kind"], "input");
    assert!(
        huge["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_image_pixels"),
        "{huge}"
    );
    let broken = record("in/broken.jpg");
    assert_eq!(broken["error"]["kind"], "input", "{broken}");
}

#[test]
fn the_in_process_gemma_sees_the_page_images() {
    let p = Project::new();
    // The same prompt with and without the page: the image's soft tokens are in the usage.
    p.write(
        "scripts/s.rhai",
        r#"
fn ask(images) {
    try { local(#{ prompt: "Transcribe.", images: images, max_tokens: 16 }) } catch (e) { e.kind }
}
fn process(doc) { #{ seen: ask(doc.images), blind: ask([]) } }
"#,
    );
    p.write("in/photo.png", png(320, 240, 100));
    let done = p
        .hybrid(&[
            "run",
            "scripts/s.rhai",
            "in",
            "--local-model",
            "tiny",
            "--cache",
            "off",
        ])
        .output()
        .expect_code(0);
    let r = done.record("in/photo.png");
    let calls = r["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2, "{r}");
    let (seen, blind) = (
        calls[0]["prompt_tokens"].as_u64().unwrap(),
        calls[1]["prompt_tokens"].as_u64().unwrap(),
    );
    assert!(
        seen > blind + 8,
        "the image reached the vision tower: {seen} vs {blind} prompt tokens"
    );

    // A script passing something else as `images` is told what to pass.
    p.write(
        "scripts/bad.rhai",
        "fn process(doc) { local(#{ prompt: \"read\", images: [\"page.png\"] }) }\n",
    );
    let done = p
        .hybrid(&["run", "scripts/bad.rhai", "in", "--local-model", "tiny"])
        .output()
        .expect_code(2);
    let r = done.record("in/photo.png");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("doc.images"),
        "{r}"
    );
}

#[test]
fn a_pipeline_may_allow_images_to_the_cloud_and_they_are_audited_by_hash() {
    let p = Project::new();
    p.write(
        "scripts/s.rhai",
        "fn process(doc) { cloud(#{ prompt: \"What does this page say?\", images: doc.images }) }\n",
    );
    p.write(
        "scripts/other.rhai",
        "fn process(doc) { cloud(#{ prompt: \"x\", images: doc.images }) }\n",
    );
    // Allowed for this pipeline only.
    p.write(
        "hybrid.toml",
        "[guard.scripts.\"scripts/s.rhai\"]\nimages = \"allow\"\n",
    );
    p.write("in/photo.png", png(300, 200, 90));
    let cloud = StubServer::start(|_, _| Reply::content("una factura"));
    let url = cloud.url();
    let run = |script: &str, code: i32| {
        p.hybrid(&[
            "run",
            script,
            "in",
            "--cloud-url",
            &url,
            "--cache",
            "off",
            "--audit",
            "audit.jsonl",
            "--out",
            "-",
        ])
        .output()
        .expect_code(code)
    };
    let done = run("scripts/s.rhai", 0);
    assert_eq!(done.record("in/photo.png")["result"], "una factura");
    let sent = &cloud.requests()[0];
    let parts = sent.body["messages"][0]["content"].as_array().unwrap();
    assert_eq!(parts[1]["type"], "image_url");
    assert!(parts[1]["image_url"]["url"]
        .as_str()
        .unwrap()
        .starts_with("data:image/png;base64,"));
    let text = std::fs::read_to_string(p.path("audit.jsonl")).unwrap();
    assert!(!text.contains("base64,"), "no image bytes in the audit log");
    let lines = audit_lines(&p.path("audit.jsonl"));
    let attempt = lines.iter().find(|l| l["outcome"] == "attempt").unwrap();
    let url = attempt["payload"]["messages"][0]["content"][1]["image_url"]["url"]
        .as_str()
        .unwrap();
    assert!(url.starts_with("sha256:") && url.len() == 7 + 64, "{url}");
    // What left is what the audit counted.
    assert_eq!(attempt["bytes"], sent.raw.len());

    // The same policy does not carry over to another pipeline.
    let other = run("scripts/other.rhai", 2);
    assert_eq!(other.record("in/photo.png")["error"]["kind"], "blocked");
    assert_eq!(cloud.requests().len(), 1);
}
