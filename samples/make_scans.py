"""Makes the scanned samples from `contracts/servicios_bogota.txt`: a 150-dpi scan in a PDF
(slightly rotated, paper noise) and a phone photo (skewed, unevenly lit, on a desk).

    python3 samples/make_scans.py      # needs Pillow and the DejaVu fonts (fonts-dejavu-core)
"""

import io
import os
import random
import textwrap

from PIL import Image, ImageDraw, ImageFilter, ImageFont

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "contracts")
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


def page(text, width, height, size, margin):
    """The contract typed on a white page, wrapped to the page's width."""
    img = Image.new("L", (width, height), 250)
    draw = ImageDraw.Draw(img)
    font = ImageFont.truetype(FONT, size)
    chars = int((width - 2 * margin) / (size * 0.55))
    y = margin
    for paragraph in text.split("\n\n"):
        for line in textwrap.wrap(" ".join(paragraph.split()), chars):
            draw.text((margin, y), line, font=font, fill=25)
            y += int(size * 1.45)
        y += int(size * 0.8)
    return img


def noise(img, amount, seed):
    rng = random.Random(seed)
    px = img.load()
    for _ in range(img.width * img.height // 40):
        x, y = rng.randrange(img.width), rng.randrange(img.height)
        px[x, y] = max(0, min(255, px[x, y] + rng.randint(-amount, amount)))
    return img


def main():
    with open(os.path.join(HERE, "servicios_bogota.txt"), encoding="utf-8") as f:
        text = f.read()
    # The scan: US Letter at 150 dpi, a little crooked, JPEG in a PDF as scanners write it.
    scan = page(text, 1275, 1650, 22, 110)
    scan = scan.rotate(0.6, resample=Image.BICUBIC, fillcolor=250)
    scan = noise(scan, 40, 1).filter(ImageFilter.GaussianBlur(0.5))
    scan.save(os.path.join(HERE, "servicios_bogota_escaneado.pdf"), "PDF", resolution=150.0, quality=70)
    # The photo: the page held at an angle, lit from one side, on a dark desk.
    sheet = page(text, 900, 1165, 17, 70).convert("RGB")
    w, h = 1000, 1300
    photo = sheet.transform(
        (w, h), Image.QUAD, (-40, -30, -60, 1190, 950, 1210, 930, -50), resample=Image.BICUBIC, fillcolor=(70, 62, 55)
    )
    shade = Image.linear_gradient("L").rotate(90).resize((w, h))
    photo = Image.composite(photo, Image.new("RGB", (w, h), (40, 36, 32)), shade.point(lambda v: 255 - v // 3))
    photo = photo.filter(ImageFilter.GaussianBlur(0.7))
    out = io.BytesIO()
    photo.save(out, "JPEG", quality=80)
    with open(os.path.join(HERE, "foto_contrato_bogota.jpg"), "wb") as f:
        f.write(out.getvalue())


if __name__ == "__main__":
    main()
