//! PDF pages drawn to pixels, for the scanned pages whose image cannot simply be taken out.
//!
//! A scanned page is drawn rather than its image taken out and decoded here: on a 300-dpi
//! scan, drawing with `hayro` (a pure-Rust PDF rasteriser) straight at the size models take
//! ([`MAX_SIDE`] on the long side) costs 0.4× the CPU of taking a JPEG page out with lopdf
//! and `image`, and 0.23× for a CCITT Group 4 page, with the same pixels to within a few
//! levels of grey (`benches/scans.rs`). And it reads what real scans also come as: JBIG2
//! (the "compact PDF" of office multifunction printers), JPEG 2000, CCITT Group 3, indexed
//! or ICC colour, a page cut into strips, text turned into outlines. Taking the image out
//! ([`crate::images::pdf_image`]) stays as the fallback for a page `hayro` cannot draw.
//! Like the rest of PDF reading, this runs in the PDF child process under its memory limit.

use std::sync::Arc;

use hayro::hayro_interpret::InterpreterSettings;
use hayro::hayro_syntax::Pdf;
use hayro::vello_cpu::color::palette::css::WHITE;
use hayro::{PixmapSettings, RenderCache, RenderSettings};

use crate::images::{PageImage, MAX_SIDE};

/// A PDF opened for drawing its pages.
pub struct Renderer {
    pdf: Pdf,
}

impl Renderer {
    /// `None` when the renderer cannot open the file (encrypted with a password, or broken in
    /// a way it does not repair): the caller keeps its own reason.
    pub fn open(bytes: &[u8]) -> Option<Renderer> {
        Pdf::new(Arc::new(bytes.to_vec()))
            .ok()
            .map(|pdf| Renderer { pdf })
    }

    /// Page `number` (1-based) drawn at most [`MAX_SIDE`] pixels on its long side, as a model
    /// input.
    pub fn page(&self, number: u32) -> Result<PageImage, String> {
        let pixels = self.draw(number, MAX_SIDE)?;
        crate::images::page(number, pixels)
    }

    /// Page `number` drawn with its long side `side` pixels (less for a very wide page).
    pub fn draw(&self, number: u32, side: u32) -> Result<image::DynamicImage, String> {
        let pages = self.pdf.pages();
        let page = pages
            .get(number as usize - 1)
            .ok_or_else(|| format!("the PDF has no page {number}"))?;
        let (width, height) = page.render_dimensions();
        if !(width > 0.0 && height > 0.0) {
            return Err(format!("page {number} has no size to draw"));
        }
        // The renderer truncates the scaled size: half a pixel more keeps `side` whole.
        let scale = (side as f32 + 0.5) / width.max(height);
        // The renderer's canvas is at most 65535 pixels a side.
        let scale = scale.min(u16::MAX as f32 / width.max(height));
        let cache = RenderCache::new();
        let pixmap = hayro::render(
            page,
            &cache,
            &InterpreterSettings::default(),
            &RenderSettings::default(),
            &PixmapSettings {
                x_scale: scale,
                y_scale: scale,
                bg_color: WHITE,
            },
        );
        let (w, h) = (u32::from(pixmap.width()), u32::from(pixmap.height()));
        // On an opaque white background, premultiplied RGBA is plain RGBA.
        let rgba = image::RgbaImage::from_raw(w, h, pixmap.data_as_u8_slice().to_vec())
            .ok_or_else(|| format!("page {number} was drawn at an impossible size"))?;
        let rgb = image::DynamicImage::ImageRgba8(rgba).to_rgb8();
        Ok(if is_grey(&rgb) {
            image::DynamicImage::ImageLuma8(image::DynamicImage::ImageRgb8(rgb).to_luma8())
        } else {
            image::DynamicImage::ImageRgb8(rgb)
        })
    }
}

/// Every pixel grey (a black-and-white or greyscale scan): kept as one channel, a third of
/// the PNG.
fn is_grey(rgb: &image::RgbImage) -> bool {
    rgb.pixels().all(|p| p[0] == p[1] && p[1] == p[2])
}

#[cfg(test)]
mod tests {
    use lopdf::{dictionary, Document, Object, Stream};

    /// A PDF of these pages, each a content stream and its image XObjects (`/Im1`, ...).
    fn pdf(pages: Vec<(&str, Vec<Stream>)>) -> Vec<u8> {
        let mut doc = Document::with_version("1.5");
        let tree = doc.new_object_id();
        let mut kids = Vec::new();
        for (content, images) in pages {
            let mut xobjects = lopdf::Dictionary::new();
            for (i, image) in images.into_iter().enumerate() {
                xobjects.set(format!("Im{}", i + 1), doc.add_object(image));
            }
            let contents = doc.add_object(Stream::new(dictionary! {}, content.as_bytes().to_vec()));
            kids.push(Object::from(doc.add_object(dictionary! {
                "Type" => "Page", "Parent" => tree, "MediaBox" => vec![0.into(), 0.into(), 600.into(), 400.into()],
                "Contents" => contents, "Resources" => dictionary! { "XObject" => xobjects },
            })));
        }
        let count = kids.len() as i64;
        doc.objects.insert(
            tree,
            Object::Dictionary(dictionary! { "Type" => "Pages", "Kids" => kids, "Count" => count }),
        );
        let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => tree });
        doc.trailer.set("Root", catalog);
        let mut bytes = Vec::new();
        doc.save_to(&mut bytes).unwrap();
        bytes
    }

    fn image(width: i64, height: i64, extra: lopdf::Dictionary, data: Vec<u8>) -> Stream {
        let mut dict = dictionary! {
            "Type" => "XObject", "Subtype" => "Image", "Width" => width, "Height" => height,
        };
        dict.extend(&extra);
        Stream::new(dict, data).with_compression(false)
    }

    /// The page images `image_pages` reads, as grey pixels.
    fn pages(bytes: &[u8]) -> Vec<image::GrayImage> {
        crate::extract::image_pages(bytes, true)
            .expect("a scan")
            .expect("readable")
            .iter()
            .map(|p| image::load_from_memory(&p.png).unwrap().to_luma8())
            .collect()
    }

    /// Mean grey of a vertical band of the image (0 black, 255 white), `from` and `to` as
    /// fractions of the width.
    fn band(img: &image::GrayImage, from: f32, to: f32) -> f32 {
        let (w, h) = img.dimensions();
        let (a, b) = ((w as f32 * from) as u32, (w as f32 * to) as u32);
        let sum: u64 = (a..b)
            .flat_map(|x| (0..h).map(move |y| (x, y)))
            .map(|(x, y)| u64::from(img.get_pixel(x, y).0[0]))
            .sum();
        sum as f32 / ((b - a) * h) as f32
    }

    /// A black-and-white page coded as an office scanner's "compact PDF" does: JBIG2, here a
    /// generic region in MMR (the Group 4 code), left half black.
    fn jbig2(width: u32, height: u32) -> Vec<u8> {
        let mut encoder = fax::encoder::Encoder::new(fax::VecWriter::new());
        for _ in 0..height {
            let row = (0..width).map(|x| {
                if x < width / 2 {
                    fax::Color::Black
                } else {
                    fax::Color::White
                }
            });
            encoder.encode_line(row, width as u16).unwrap();
        }
        let mmr = encoder.finish().unwrap().finish();
        let segment = |number: u32, kind: u8, data: &[u8]| {
            let mut s = number.to_be_bytes().to_vec();
            s.extend([kind, 0, 1]);
            s.extend((data.len() as u32).to_be_bytes());
            s.extend(data);
            s
        };
        let mut page_info = Vec::new();
        for v in [width, height, 0, 0] {
            page_info.extend(v.to_be_bytes());
        }
        page_info.extend([0, 0, 0]);
        let mut region = Vec::new();
        for v in [width, height, 0, 0] {
            region.extend(v.to_be_bytes());
        }
        region.extend([0, 1]); // combination OR; MMR
        region.extend(mmr);
        [segment(0, 48, &page_info), segment(1, 38, &region)].concat()
    }

    const FULL_PAGE: &str = "q 600 0 0 400 0 0 cm /Im1 Do Q";

    #[test]
    fn jbig2_and_jpeg_2000_scans_are_drawn() {
        let jbig2_page = image(
            300,
            200,
            dictionary! { "BitsPerComponent" => 1, "ColorSpace" => "DeviceGray", "Filter" => "JBIG2Decode" },
            jbig2(300, 200),
        );
        let jpx_page = image(
            120,
            90,
            dictionary! { "Filter" => "JPXDecode" },
            include_bytes!("../tests/fixtures/half_black.jp2").to_vec(),
        );
        let bytes = pdf(vec![
            (FULL_PAGE, vec![jbig2_page]),
            (FULL_PAGE, vec![jpx_page]),
        ]);
        let pages = pages(&bytes);
        assert_eq!(pages.len(), 2);
        for page in &pages {
            // Drawn at the size models take, the page's shape kept.
            assert_eq!(page.dimensions(), (896, 597));
            assert!(band(page, 0.05, 0.45) < 40.0, "left half black");
            assert!(band(page, 0.55, 0.95) > 215.0, "right half white");
        }
    }

    #[test]
    fn strips_indexed_colour_and_outlined_text_are_drawn_and_blank_pages_skipped() {
        // A page scanned in two strips, the top one black.
        let strip = |shade: u8| {
            image(
                60,
                20,
                dictionary! { "BitsPerComponent" => 8, "ColorSpace" => "DeviceGray" },
                vec![shade; 60 * 20],
            )
        };
        let strips = "q 600 0 0 200 0 200 cm /Im1 Do Q q 600 0 0 200 0 0 cm /Im2 Do Q";
        // Indexed colour: a palette of black and white, left half black.
        let indexed = image(
            4,
            2,
            dictionary! {
                "BitsPerComponent" => 8,
                "ColorSpace" => vec!["Indexed".into(), "DeviceRGB".into(), 1.into(), Object::string_literal(vec![0u8, 0, 0, 255, 255, 255])],
            },
            vec![0, 0, 1, 1, 0, 0, 1, 1],
        );
        // Text turned into outlines: filled shapes, no text operators, no image.
        let outlines = "0 g 30 30 270 340 re f";
        let bytes = pdf(vec![
            (strips, vec![strip(0), strip(255)]),
            ("", vec![]),
            (FULL_PAGE, vec![indexed]),
            (outlines, vec![]),
        ]);
        let pages = pages(&bytes);
        assert_eq!(pages.len(), 3, "the blank page is left out");
        let strips = &pages[0];
        let (w, h) = strips.dimensions();
        let top = image::imageops::crop_imm(strips, 0, 0, w, h / 2 - 5).to_image();
        let bottom = image::imageops::crop_imm(strips, 0, h / 2 + 5, w, h / 2 - 5).to_image();
        assert!(band(&top, 0.0, 1.0) < 10.0 && band(&bottom, 0.0, 1.0) > 245.0);
        for page in &pages[1..] {
            assert!(band(page, 0.1, 0.4) < 40.0, "left black");
            assert!(band(page, 0.6, 0.9) > 215.0, "right white");
        }
    }
}
