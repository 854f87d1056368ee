//! Scanned pages, run with `cargo bench --profile dev --bench scans`.
//!
//! A 10-page scan at 300 dpi (`BENCH_PAGES`; US Letter, 2550 × 3300 grey pixels a page,
//! JPEG-compressed as scanners write them) from file to model input: `hybrid run` with a
//! script that only counts `doc.images` (the PDF is parsed, each page's JPEG decoded,
//! scaled to 896 px and kept as PNG, in the extractor's child process), against poppler's
//! `pdftoppm -r 150 -gray` on the same file (the reference: rendering at half the scan's
//! resolution). Reported: CPU per page (user + sys, children included) and peak memory (the
//! largest process), medians of `BENCH_RUNS` (default 3), and their ratio. Then, in this
//! process, the two ways a scanned page becomes model input on the same pages: drawing the
//! page with hayro (`render`, what `hybrid` does) and taking its image out with lopdf and
//! `image` (its fallback), with how far apart their pixels are. Numbers are printed, never asserted.

#[path = "../tests/it/support.rs"]
mod support;

use std::io::Cursor;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A scanner's page: paper grey with lines of "text" strokes and a little noise.
fn page_jpeg(n: u32) -> Vec<u8> {
    let (w, h) = (2550u32, 3300u32);
    let img = image::GrayImage::from_fn(w, h, |x, y| {
        let line = (y / 48) % 3 != 2 && y > 300 && y < 3000 && x > 250 && x < 2300;
        let stroke = line && ((x / 7 + y / 5 + n) % 11 < 3) && (y % 48) < 28;
        let noise = ((x.wrapping_mul(2654435761) ^ y.wrapping_mul(40503)) >> 27) as u8;
        image::Luma([if stroke { 40 + noise } else { 235 - noise }])
    });
    let mut out = Cursor::new(Vec::new());
    let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80);
    encoder.encode_image(&img).unwrap();
    out.into_inner()
}

fn scan_pdf(pages: u32) -> Vec<u8> {
    scan_pdf_of(pages, |i| {
        let jpeg = page_jpeg(i);
        [
            format!("<< /Type /XObject /Subtype /Image /Width 2550 /Height 3300 /ColorSpace /DeviceGray /BitsPerComponent 8 /Filter /DCTDecode /Length {} >>\nstream\n", jpeg.len()).into_bytes(),
            jpeg,
            b"\nendstream".to_vec(),
        ]
        .concat()
    })
}

/// The same pages in black and white, CCITT Group 4, as office scanners write them.
fn scan_pdf_g4(pages: u32) -> Vec<u8> {
    scan_pdf_of(pages, |n| {
        let (w, h) = (2550u32, 3300u32);
        let mut encoder = fax::encoder::Encoder::new(fax::VecWriter::new());
        for y in 0..h {
            let row = (0..w).map(|x| {
                let line = (y / 48) % 3 != 2 && y > 300 && y < 3000 && x > 250 && x < 2300;
                if line && ((x / 7 + y / 5 + n) % 11 < 3) && (y % 48) < 28 {
                    fax::Color::Black
                } else {
                    fax::Color::White
                }
            });
            encoder.encode_line(row, w as u16).unwrap();
        }
        let g4 = encoder.finish().unwrap().finish();
        [
            format!("<< /Type /XObject /Subtype /Image /Width {w} /Height {h} /ColorSpace /DeviceGray /BitsPerComponent 1 /Filter /CCITTFaxDecode /DecodeParms << /K -1 /Columns {w} /Rows {h} >> /Length {} >>\nstream\n", g4.len()).into_bytes(),
            g4,
            b"\nendstream".to_vec(),
        ]
        .concat()
    })
}

fn scan_pdf_of(pages: u32, image_object: impl Fn(u32) -> Vec<u8>) -> Vec<u8> {
    let mut objects: Vec<Vec<u8>> = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        format!(
            "<< /Type /Pages /Kids [{}] /Count {pages} >>",
            (0..pages)
                .map(|i| format!("{} 0 R", 3 + i * 3))
                .collect::<Vec<_>>()
                .join(" ")
        )
        .into_bytes(),
    ];
    for i in 0..pages {
        let (content, image) = (4 + i * 3, 5 + i * 3);
        objects.push(
            format!("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {content} 0 R /Resources << /XObject << /Im1 {image} 0 R >> >> >>")
                .into_bytes(),
        );
        let draw = "q 612 0 0 792 0 0 cm /Im1 Do Q";
        objects
            .push(format!("<< /Length {} >>\nstream\n{draw}\nendstream", draw.len()).into_bytes());
        objects.push(image_object(i));
    }
    support::assemble_pdf(&objects)
}

/// CPU (user + sys, waited-for children included) and peak RSS (the largest of the
/// process and its children) of a command run to its end.
fn measure(mut command: Command) -> (Duration, u64) {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid);
    std::mem::forget(child);
    assert!(libc::WIFEXITED(status), "did not exit");
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (
        tv(usage.ru_utime) + tv(usage.ru_stime),
        usage.ru_maxrss as u64 * 1024,
    )
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

fn main() {
    let pages: u32 = std::env::var("BENCH_PAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("scripts")).unwrap();
    std::fs::write(
        root.join("scripts/pages.rhai"),
        "fn process(doc) { #{ pages: doc.images.len(), first: doc.images[0].width } }\n",
    )
    .unwrap();
    let pdf = scan_pdf(pages);
    std::fs::write(root.join("scan.pdf"), &pdf).unwrap();
    println!(
        "{pages}-page scan at 300 dpi (2550 × 3300 grey, JPEG): {:.1} MB",
        pdf.len() as f64 / 1e6
    );
    let hybrid = |root: &Path| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_hybrid"));
        c.args([
            "--quiet",
            "run",
            "scripts/pages.rhai",
            "scan.pdf",
            "--out",
            "-",
        ])
        .current_dir(root);
        c
    };
    // Once to check it reads every page.
    let out = hybrid(root).stdout(Stdio::piped()).output().unwrap();
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a record");
    assert_eq!(record["result"]["pages"], pages, "{record}");

    let (mut ours, mut ours_peak) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let (cpu, peak) = measure(hybrid(root));
        ours.push(cpu.as_secs_f64() * 1000.0 / pages as f64);
        ours_peak.push(peak as f64 / (1 << 20) as f64);
    }
    let poppler = Command::new("pdftoppm")
        .arg("-v")
        .stderr(Stdio::null())
        .status()
        .is_ok();
    println!(
        "hybrid (file → {pages} page images for the model): {:.1} ms CPU a page, peak {:.0} MiB",
        median(ours.clone()),
        median(ours_peak.clone())
    );
    if !poppler {
        println!("pdftoppm is not installed (apt-get install poppler-utils): no reference");
        return;
    }
    let (mut theirs, mut theirs_peak) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let mut c = Command::new("pdftoppm");
        c.args(["-r", "150", "-gray", "scan.pdf", "page"])
            .current_dir(root);
        let (cpu, peak) = measure(c);
        theirs.push(cpu.as_secs_f64() * 1000.0 / pages as f64);
        theirs_peak.push(peak as f64 / (1 << 20) as f64);
    }
    let (o, t) = (median(ours), median(theirs));
    println!(
        "pdftoppm -r 150 -gray:                        {t:.1} ms CPU a page, peak {:.0} MiB",
        median(theirs_peak)
    );
    println!(
        "hybrid / pdftoppm: {:.2}× the CPU (target: at most 4×)",
        o / t
    );
    println!();
    println!("in process, file → page images at 896 px, medians of {runs}:");
    take_out_or_draw("JPEG, grey", &pdf, pages, runs);
    take_out_or_draw("CCITT G4, 1-bit", &scan_pdf_g4(pages), pages, runs);
}

/// CPU time of this process so far.
fn cpu_now() -> Duration {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The scan's pages as model input both ways, in process: CPU per page, and the mean
/// difference between the two results' pixels (0–255).
fn take_out_or_draw(label: &str, pdf: &[u8], pages: u32, runs: usize) {
    let (mut taken_ms, mut drawn_ms) = (Vec::new(), Vec::new());
    let (mut taken, mut drawn) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let started = cpu_now();
        taken = hybrid::extract::image_pages_by(pdf, true, hybrid::extract::Scanned::TakeOut)
            .expect("a scan")
            .expect("pages taken out");
        taken_ms.push((cpu_now() - started).as_secs_f64() * 1000.0 / pages as f64);
        let started = cpu_now();
        drawn = hybrid::extract::image_pages_by(pdf, true, hybrid::extract::Scanned::Draw)
            .expect("a scan")
            .expect("pages drawn");
        drawn_ms.push((cpu_now() - started).as_secs_f64() * 1000.0 / pages as f64);
    }
    let grey = |p: &hybrid::images::PageImage| image::load_from_memory(&p.png).unwrap().to_luma8();
    let (a, b) = (grey(&taken[0]), grey(&drawn[0]));
    // The two may round the scaled size differently by a pixel: compare what both cover.
    let (w, h) = (a.width().min(b.width()), a.height().min(b.height()));
    let sum: u64 = (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .map(|(x, y)| u64::from(a.get_pixel(x, y).0[0].abs_diff(b.get_pixel(x, y).0[0])))
        .sum();
    let difference = sum as f64 / (w * h) as f64;
    let (t, d) = (median(taken_ms), median(drawn_ms));
    println!("  {label}: image taken out (lopdf + image) {t:.1} ms CPU a page; page drawn (hayro) {d:.1} ms ({:.2}×); mean pixel difference {difference:.1} of 255", d / t);
}
