//! Image kits: how a kit reads a picture (the tools before the model) and
//! the golden pictures made from holdout rows, for each way pictures arrive.

use serde_json::{json, Value as J};

use super::data::Prepared;
use super::recipe::ImageSpec;

/// How many times larger than the model's grid the golden pictures are, so
/// that the kits' resize step shrinks them.
pub(super) const UPSCALE: usize = 4;

/// How pictures reach an image kit; each is a kit of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Capture {
    /// The picture alone, in the training data's colours.
    Plain,
    /// A scanned paper form: dark ink on white, the field at a fixed box
    /// (`crop`, `invert`).
    Form,
    /// A camera mounted on its side: pictures arrive turned a quarter
    /// clockwise (`rotate` turns them back).
    Sideways,
}

/// The form's field: its top-left corner on the page, in golden-page pixels.
const FORM_AT: (usize, usize) = (24, 16);
/// The page around the field: this much wider and taller than the field.
const FORM_EXTRA: (usize, usize) = (56, 40);

/// Every tool an image kit may use, in pipeline order.
pub(super) const TOOLS: [&str; 9] = [
    "image-decode",
    "grayscale",
    "crop",
    "invert",
    "rotate",
    "equalize",
    "resize",
    "normalize",
    "flatten",
];

/// The steps from the input `image` to the model's row, `filled`.
pub(super) fn steps(spec: &ImageSpec, capture: Capture, tool: &dyn Fn(&str) -> String) -> Vec<J> {
    let (fw, fh) = (spec.width * UPSCALE, spec.height * UPSCALE);
    let mut steps = vec![
        // 4 megapixels at most: within the kit's stage memory, refused by name past it.
        json!({
            "name": "decode",
            "stage": tool("image-decode"),
            "config": {"max_pixels": 4_000_000},
            "outputs": {"pixels": "rgb"},
        }),
        json!({"name": "gray", "stage": tool("grayscale"), "inputs": {"pixels": "rgb"}, "outputs": {"gray": "gray"}}),
    ];
    let mut last = "gray";
    let mut step = |name: &str, stage: &str, config: J, out: &'static str, port: &str| {
        steps.push(json!({
            "name": name,
            "stage": tool(stage),
            "config": config,
            "inputs": {"pixels": last},
            "outputs": {port: out},
        }));
        last = out;
    };
    match capture {
        Capture::Plain => {}
        Capture::Form => {
            let c = json!({"x": FORM_AT.0, "y": FORM_AT.1, "width": fw, "height": fh});
            step("field", "crop", c, "field", "cropped");
            step("ink", "invert", json!({}), "ink", "inverted");
        }
        Capture::Sideways => step(
            "upright",
            "rotate",
            json!({"degrees": 90}),
            "upright",
            "rotated",
        ),
    }
    if spec.equalize {
        step("equalize", "equalize", json!({}), "even", "equalized");
    }
    let c = json!({"width": spec.width, "height": spec.height, "filter": "pillow:box"});
    step("resize", "resize", c, "small", "resized");
    let c = json!({"scale": spec.white / 255.0});
    step("normalize", "normalize", c, "grid", "values");
    steps.push(json!({
        "name": "flatten",
        "stage": tool("flatten"),
        "config": {"expect": spec.width * spec.height},
        "inputs": {"values": "grid"},
        "outputs": {"row": "filled"},
    }));
    steps
}

/// What the kit's card says it reads.
pub(super) fn reads(spec: &ImageSpec, capture: Capture) -> String {
    let (fw, fh) = (spec.width * UPSCALE, spec.height * UPSCALE);
    let even = if spec.equalize {
        "; its histogram equalised"
    } else {
        ""
    };
    match capture {
        Capture::Plain => format!(
            "a PNG or JPEG picture (any size, shrunk to {}x{} gray; white ink on black, white \
             being {}{even})",
            spec.width, spec.height, spec.white
        ),
        Capture::Form => format!(
            "a scanned form as PNG or JPEG (dark ink on white paper; the field is the {fw}x{fh} \
             box at x {}, y {}, cut out, inverted and shrunk to {}x{} gray{even})",
            FORM_AT.0, FORM_AT.1, spec.width, spec.height
        ),
        Capture::Sideways => format!(
            "a PNG or JPEG from a camera mounted on its side (pictures turned a quarter \
             clockwise, turned back, shrunk to {}x{} gray{even})",
            spec.width, spec.height
        ),
    }
}

/// A row's grid as gray levels (white is `spec.white`).
fn grid(p: &Prepared, i: usize, spec: &ImageSpec) -> Vec<u8> {
    p.cells[i]
        .iter()
        .map(|c| {
            let v = c.parse::<f64>().unwrap_or(0.0);
            (v / spec.white * 255.0).round().clamp(0.0, 255.0) as u8
        })
        .collect()
}

/// A grid as a gray picture `UPSCALE` times its size, each cell a square.
fn upscaled(grid: &[u8], spec: &ImageSpec) -> algobay_imaging::Image {
    let (w, h, k) = (spec.width, spec.height, UPSCALE);
    let mut px = Vec::with_capacity(w * h * k * k);
    for y in 0..h * k {
        for x in 0..w * k {
            px.push(grid[(y / k) * w + x / k]);
        }
    }
    algobay_imaging::Image::new(w * k, h * k, 1, px).expect("sized")
}

/// A holdout row as the PNG its kit's users would send.
pub(super) fn golden_png(
    p: &Prepared,
    i: usize,
    spec: &ImageSpec,
    capture: Capture,
) -> Result<Vec<u8>, String> {
    let img = upscaled(&grid(p, i, spec), spec);
    let img = match capture {
        Capture::Plain => img,
        Capture::Form => {
            // White paper with a dark frame round the page, the field inked dark.
            let (pw, ph) = (img.width + FORM_EXTRA.0, img.height + FORM_EXTRA.1);
            let mut page = vec![255u8; pw * ph];
            for y in 0..ph {
                for x in 0..pw {
                    if x < 3 || y < 3 || x >= pw - 3 || y >= ph - 3 {
                        page[y * pw + x] = 20;
                    }
                }
            }
            let ink = algobay_imaging::invert(&img);
            for y in 0..img.height {
                let at = (FORM_AT.1 + y) * pw + FORM_AT.0;
                page[at..at + img.width]
                    .copy_from_slice(&ink.data[y * img.width..(y + 1) * img.width]);
            }
            algobay_imaging::Image::new(pw, ph, 1, page).expect("sized")
        }
        Capture::Sideways => algobay_imaging::rotate(&img, -90.0, 0).map_err(|e| e.to_string())?,
    };
    let mut out = Vec::new();
    image::write_buffer_with_format(
        &mut std::io::Cursor::new(&mut out),
        &img.data,
        img.width as u32,
        img.height as u32,
        image::ExtendedColorType::L8,
        image::ImageFormat::Png,
    )
    .map_err(|e| format!("png: {e}"))?;
    Ok(out)
}

/// An `equalize` recipe's rows as its kits see them: each row's picture at
/// the golden size, equalised, read back a cell at a time (the kit's box
/// resize of equal squares gives the cell's value back exactly).
pub(super) fn equalized_features(mut p: Prepared, spec: &ImageSpec) -> Prepared {
    for i in 0..p.x.len() {
        let even = algobay_imaging::equalize(&upscaled(&grid(&p, i, spec), spec));
        let w = spec.width * UPSCALE;
        p.x[i] = (0..spec.width * spec.height)
            .map(|c| {
                let (y, x) = ((c / spec.width) * UPSCALE, (c % spec.width) * UPSCALE);
                (even.data[y * w + x] as f64 * spec.white / 255.0) as f32
            })
            .collect();
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_capture_reads_with_its_own_tools() {
        let spec = ImageSpec {
            width: 8,
            height: 8,
            white: 16.0,
            equalize: true,
        };
        let stages = |c| {
            steps(&spec, c, &|t: &str| t.to_owned())
                .iter()
                .map(|s| s["stage"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            stages(Capture::Form),
            [
                "image-decode",
                "grayscale",
                "crop",
                "invert",
                "equalize",
                "resize",
                "normalize",
                "flatten"
            ]
        );
        assert!(stages(Capture::Sideways).contains(&"rotate".to_owned()));
        assert!(!stages(Capture::Plain).contains(&"crop".to_owned()));
    }
}
