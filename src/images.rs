//! Scans and photos as documents: their page images, read and checked on this machine.
//!
//! A `.png`, `.jpg`/`.jpeg`, `.webp` or `.tif`/`.tiff` (every page of a multi-page TIFF, as
//! a multifunction printer writes them) becomes a document whose `doc.images` holds one
//! image per page. Scripts get opaque handles (`img.page`, `img.width`, `img.height`), never
//! bytes: the only thing a script can do with an image is hand it to a model, and the egress
//! guard stops it on the way to the cloud unless the pipeline's policy allows it (an image
//! cannot be checked for copied text or personal data).
//!
//! Sizes are checked before anything is decoded, so a hostile file gets an error record
//! with a reason, not an out-of-memory: `[limits] max_pages` and `max_image_pixels`. Each
//! page is scaled down to at most [`MAX_SIDE`] pixels on its long side (what vision models
//! take in; more only costs time) and kept as PNG, with its SHA-256 for the audit log.

use std::io::Cursor;
use std::sync::Arc;

/// The long side a page is scaled down to.
pub const MAX_SIDE: u32 = 896;

/// The file extensions read as images.
pub const KINDS: &[&str] = &["png", "jpg", "jpeg", "webp", "tif", "tiff"];

/// One page image, ready for a model.
#[derive(Clone)]
pub struct PageImage {
    /// 1-based.
    pub page: u32,
    pub width: u32,
    pub height: u32,
    /// The page as PNG, at most [`MAX_SIDE`] on its long side.
    pub png: Arc<Vec<u8>>,
    /// SHA-256 of `png`, hex: what the audit log records instead of the bytes.
    pub sha256: String,
}

impl std::fmt::Debug for PageImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "image(page {}, {}x{}, sha256 {})",
            self.page,
            self.width,
            self.height,
            &self.sha256[..12]
        )
    }
}

impl PageImage {
    /// A `data:` URL, as the OpenAI wire format takes images.
    pub fn data_url(&self) -> String {
        use base64::Engine;
        format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(self.png.as_slice())
        )
    }
}

/// How much image a document may bring.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_pages: usize,
    pub max_image_pixels: u64,
}

static LIMITS: std::sync::OnceLock<Limits> = std::sync::OnceLock::new();

/// The limits documents are read with from now on (`[limits]`); the defaults until then.
pub fn set_limits(limits: Limits) {
    let _ = LIMITS.set(limits);
}

pub fn limits() -> Limits {
    *LIMITS.get_or_init(|| {
        let d = crate::config::Limits::default();
        Limits {
            max_pages: d.max_pages,
            max_image_pixels: d.max_image_pixels,
        }
    })
}

/// The pages of an image file, or why it has none.
pub fn read(bytes: &[u8], kind: &str, limits: Limits) -> Result<Vec<PageImage>, String> {
    let pages = match kind {
        "tif" | "tiff" => tiff_pages(bytes, limits)?,
        _ => vec![single(bytes, limits)?],
    };
    if pages.is_empty() {
        return Err("the image file holds no image".into());
    }
    pages
        .into_iter()
        .enumerate()
        .map(|(i, img)| page(i as u32 + 1, img))
        .collect()
}

pub(crate) fn too_big(
    width: u32,
    height: u32,
    limits: Limits,
    page: Option<usize>,
) -> Result<(), String> {
    let pixels = width as u64 * height as u64;
    if pixels > limits.max_image_pixels {
        let at = page.map(|p| format!("page {p} is ")).unwrap_or_default();
        return Err(format!(
            "{at}{width}×{height} pixels ({:.0} MP), over the {:.0} MP limit\nhint: raise `max_image_pixels` under [limits] in hybrid.toml if the image is real",
            pixels as f64 / 1e6,
            limits.max_image_pixels as f64 / 1e6
        ));
    }
    Ok(())
}

/// PNG, JPEG, WebP: dimensions first, then the pixels, within limits.
fn single(bytes: &[u8], limits: Limits) -> Result<image::DynamicImage, String> {
    let reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("cannot read the image: {e}"))?;
    if reader.format().is_none() {
        return Err("not an image this host reads (PNG, JPEG, WebP, TIFF); the file may be corrupt or misnamed".into());
    }
    let (width, height) = reader
        .into_dimensions()
        .map_err(|e| format!("the image cannot be read: {e}; the file may be corrupt"))?;
    too_big(width, height, limits, None)?;
    let mut reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("cannot read the image: {e}"))?;
    let mut bounds = image::Limits::default();
    bounds.max_alloc = Some(limits.max_image_pixels.saturating_mul(8));
    reader.limits(bounds);
    reader.decode().map_err(|e| {
        format!("the image cannot be decoded: {e}; the file may be corrupt or truncated")
    })
}

/// The image a scanned PDF page holds: a JPEG (`DCTDecode`) as it is, or 8-bit grey / RGB
/// samples (after `FlateDecode`), or 1-bit grey; checked against the limits first.
pub(crate) fn pdf_image(
    doc: &lopdf::Document,
    image: &lopdf::xobject::PdfImage,
    page_number: u32,
    limits: Limits,
) -> Result<image::DynamicImage, String> {
    let (width, height) = (image.width.max(0) as u32, image.height.max(0) as u32);
    too_big(width, height, limits, Some(page_number as usize))?;
    let filters = image.filters.clone().unwrap_or_default();
    let unsupported = |what: &str| {
        format!("page {page_number} of the PDF is an image in {what}, which this host does not decode yet")
    };
    if filters.iter().any(|f| f == "DCTDecode") {
        return single(image.content, limits);
    }
    if filters.iter().any(|f| f == "CCITTFaxDecode") {
        return ccitt(image, width, height, page_number, &unsupported);
    }
    if let Some(other) = filters.iter().find(|f| f.as_str() != "FlateDecode") {
        return Err(unsupported(other));
    }
    let samples = match doc.get_object(image.id).and_then(|o| o.as_stream()) {
        Ok(stream) if !filters.is_empty() => stream
            .decompressed_content()
            .map_err(|e| format!("page {page_number}'s image cannot be decompressed: {e}"))?,
        _ => image.content.to_vec(),
    };
    let bits = image.bits_per_component.unwrap_or(8);
    let colour = image.color_space.as_deref().unwrap_or("DeviceGray");
    let truncated = || format!("page {page_number}'s image is truncated");
    match (colour, bits) {
        ("DeviceGray", 8) => image::GrayImage::from_raw(width, height, samples)
            .map(image::DynamicImage::ImageLuma8)
            .ok_or_else(truncated),
        ("DeviceRGB", 8) => image::RgbImage::from_raw(width, height, samples)
            .map(image::DynamicImage::ImageRgb8)
            .ok_or_else(truncated),
        ("DeviceGray", 1) => {
            let row = width.div_ceil(8) as usize;
            if samples.len() < row * height as usize {
                return Err(truncated());
            }
            let grey = image::GrayImage::from_fn(width, height, |x, y| {
                let byte = samples[y as usize * row + x as usize / 8];
                image::Luma([if (byte >> (7 - (x % 8))) & 1 == 1 {
                    255
                } else {
                    0
                }])
            });
            Ok(image::DynamicImage::ImageLuma8(grey))
        }
        (space, bits) => Err(unsupported(&format!("{space} at {bits} bits"))),
    }
}

/// A CCITT Group 4 page (`/K` < 0), as office scanners write black-and-white PDFs.
fn ccitt(
    image: &lopdf::xobject::PdfImage,
    width: u32,
    height: u32,
    page_number: u32,
    unsupported: &dyn Fn(&str) -> String,
) -> Result<image::DynamicImage, String> {
    let parms = image
        .origin_dict
        .get(b"DecodeParms")
        .ok()
        .and_then(|p| p.as_dict().ok());
    let int = |key: &[u8]| {
        parms
            .and_then(|p| p.get(key).ok())
            .and_then(|v| v.as_i64().ok())
    };
    if int(b"K").unwrap_or(0) >= 0 {
        return Err(unsupported("CCITT Group 3"));
    }
    let columns = int(b"Columns").unwrap_or(1728).clamp(1, u16::MAX as i64) as u16;
    if width > u16::MAX as u32 || height > u16::MAX as u32 {
        return Err(unsupported("a CCITT page this large"));
    }
    let mut grey = Vec::with_capacity(width as usize * height as usize);
    let mut rows = 0u32;
    fax::decoder::decode_g4(
        image.content.iter().copied(),
        columns,
        Some(height as u16),
        |transitions| {
            if rows < height {
                grey.extend(
                    fax::decoder::pels(transitions, columns)
                        .chain(std::iter::repeat(fax::Color::White))
                        .take(width as usize)
                        .map(|c| if c == fax::Color::Black { 0u8 } else { 255 }),
                );
                rows += 1;
            }
        },
    );
    if rows < height {
        return Err(format!(
            "page {page_number}'s CCITT image ends after {rows} of its {height} rows (truncated?)"
        ));
    }
    image::GrayImage::from_raw(width, height, grey)
        .map(image::DynamicImage::ImageLuma8)
        .ok_or_else(|| format!("page {page_number}'s CCITT image is truncated"))
}

/// Every page of a TIFF, each checked before it is decoded.
fn tiff_pages(bytes: &[u8], limits: Limits) -> Result<Vec<image::DynamicImage>, String> {
    use tiff::decoder::{Decoder, DecodingResult};
    use tiff::ColorType;
    let corrupt =
        |e: tiff::TiffError| format!("the TIFF cannot be read: {e}; the file may be corrupt");
    let mut decoder = Decoder::new(Cursor::new(bytes)).map_err(corrupt)?;
    let mut pages = Vec::new();
    loop {
        if pages.len() == limits.max_pages {
            return Err(format!(
                "the TIFF has more than {} pages\nhint: raise `max_pages` under [limits] in hybrid.toml",
                limits.max_pages
            ));
        }
        let (width, height) = decoder.dimensions().map_err(corrupt)?;
        too_big(width, height, limits, Some(pages.len() + 1))?;
        let colour = decoder.colortype().map_err(corrupt)?;
        let pixels = decoder.read_image().map_err(corrupt)?;
        let page = match (colour, pixels) {
            (ColorType::Gray(8), DecodingResult::U8(buf)) => {
                image::GrayImage::from_raw(width, height, buf).map(image::DynamicImage::ImageLuma8)
            }
            (ColorType::RGB(8), DecodingResult::U8(buf)) => {
                image::RgbImage::from_raw(width, height, buf).map(image::DynamicImage::ImageRgb8)
            }
            (ColorType::RGBA(8), DecodingResult::U8(buf)) => {
                image::RgbaImage::from_raw(width, height, buf).map(image::DynamicImage::ImageRgba8)
            }
            // Fax-style scans: one bit a pixel, 0 = white unless told otherwise; the decoder
            // hands them over packed, a row at a time.
            (ColorType::Gray(1), DecodingResult::U8(buf)) => {
                let row = width.div_ceil(8) as usize;
                let mut grey = image::GrayImage::new(width, height);
                for (x, y, px) in grey.enumerate_pixels_mut() {
                    let byte = buf.get(y as usize * row + x as usize / 8).copied().unwrap_or(0);
                    let bit = (byte >> (7 - (x % 8))) & 1;
                    px.0 = [if bit == 1 { 255 } else { 0 }];
                }
                Some(image::DynamicImage::ImageLuma8(grey))
            }
            (other, _) => {
                return Err(format!(
                    "TIFF page {} is in a colour layout this host does not read ({other:?}); convert it to 8-bit grey or RGB",
                    pages.len() + 1
                ))
            }
        };
        pages.push(page.ok_or_else(|| format!("TIFF page {} is truncated", pages.len() + 1))?);
        if !decoder.more_images() {
            break;
        }
        decoder.next_image().map_err(corrupt)?;
    }
    Ok(pages)
}

/// A page already scaled and encoded as PNG (by the PDF reader's child process).
pub(crate) fn from_png(number: u32, png: Vec<u8>) -> Result<PageImage, String> {
    let (width, height) =
        image::ImageReader::with_format(Cursor::new(&png), image::ImageFormat::Png)
            .into_dimensions()
            .map_err(|e| format!("a page image is broken: {e}"))?;
    if width.max(height) > MAX_SIDE {
        return Err(format!(
            "a page image is {width}×{height}, larger than pages are kept"
        ));
    }
    let sha256 = crate::schemas::hash_hex(&png);
    Ok(PageImage {
        page: number,
        width,
        height,
        png: Arc::new(png),
        sha256,
    })
}

/// Scaled down and kept as PNG.
pub(crate) fn page(number: u32, img: image::DynamicImage) -> Result<PageImage, String> {
    let img = if img.width().max(img.height()) > MAX_SIDE {
        img.thumbnail(MAX_SIDE, MAX_SIDE)
    } else {
        img
    };
    let img = match img {
        image::DynamicImage::ImageLuma8(_) | image::DynamicImage::ImageRgb8(_) => img,
        other => image::DynamicImage::ImageRgb8(other.to_rgb8()),
    };
    let mut png = Vec::new();
    img.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| format!("cannot re-encode page {number}: {e}"))?;
    let sha256 = crate::schemas::hash_hex(&png);
    Ok(PageImage {
        page: number,
        width: img.width(),
        height: img.height(),
        png: Arc::new(png),
        sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_pages: 10,
        max_image_pixels: 50_000_000,
    };

    fn png(width: u32, height: u32) -> Vec<u8> {
        let img =
            image::GrayImage::from_fn(width, height, |x, y| image::Luma([((x + y) % 256) as u8]));
        let mut out = Vec::new();
        image::DynamicImage::ImageLuma8(img)
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn a_photo_is_one_page_scaled_to_what_models_take() {
        let pages = read(&png(1800, 1200), "png", LIMITS).unwrap();
        assert_eq!(pages.len(), 1);
        assert_eq!((pages[0].width, pages[0].height), (896, 597));
        assert_eq!(pages[0].sha256.len(), 64);
        assert!(pages[0]
            .data_url()
            .starts_with("data:image/png;base64,iVBOR"));
    }

    #[test]
    fn oversized_and_corrupt_images_are_refused_with_a_reason() {
        let small = Limits {
            max_pages: 10,
            max_image_pixels: 1_000,
        };
        let err = read(&png(100, 100), "png", small).unwrap_err();
        assert!(err.contains("max_image_pixels"), "{err}");
        let mut cut = png(64, 64);
        cut.truncate(cut.len() / 2);
        let err = read(&cut, "png", LIMITS).unwrap_err();
        assert!(
            err.contains("cannot be decoded") || err.contains("corrupt"),
            "{err}"
        );
        let err = read(b"not an image at all", "png", LIMITS).unwrap_err();
        assert!(err.contains("not an image"), "{err}");
    }

    #[test]
    fn a_ccitt_group_4_page_decodes_to_its_pixels() {
        use lopdf::{dictionary, Object, Stream};
        let (w, h) = (40u16, 6u16);
        // Stripes: columns 8..16 and 24..32 black on every row.
        let black = |x: u16| (8..16).contains(&x) || (24..32).contains(&x);
        let mut encoder = fax::encoder::Encoder::new(fax::VecWriter::new());
        for _ in 0..h {
            let row = (0..w).map(|x| {
                if black(x) {
                    fax::Color::Black
                } else {
                    fax::Color::White
                }
            });
            encoder.encode_line(row, w).unwrap();
        }
        let g4 = encoder.finish().unwrap().finish();
        let mut doc = lopdf::Document::with_version("1.4");
        let image = doc.add_object(Stream::new(
            dictionary! {
                "Type" => "XObject", "Subtype" => "Image", "Width" => w as i64, "Height" => h as i64,
                "BitsPerComponent" => 1, "ColorSpace" => "DeviceGray", "Filter" => "CCITTFaxDecode",
                "DecodeParms" => dictionary! { "K" => -1, "Columns" => w as i64, "Rows" => h as i64 },
            },
            g4,
        ));
        let pages = doc.new_object_id();
        let page = doc.add_object(dictionary! {
            "Type" => "Page", "Parent" => pages,
            "Resources" => dictionary! { "XObject" => dictionary! { "Im1" => image } },
        });
        doc.objects.insert(
            pages,
            Object::Dictionary(
                dictionary! { "Type" => "Pages", "Kids" => vec![page.into()], "Count" => 1 },
            ),
        );
        let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages });
        doc.trailer.set("Root", catalog);
        let images = doc.get_page_images(page).unwrap();
        let img = pdf_image(&doc, &images[0], 1, LIMITS).unwrap().to_luma8();
        assert_eq!(img.dimensions(), (w as u32, h as u32));
        for y in 0..h as u32 {
            for x in 0..w as u32 {
                let expected = if black(x as u16) { 0 } else { 255 };
                assert_eq!(img.get_pixel(x, y).0[0], expected, "({x}, {y})");
            }
        }
    }
}
