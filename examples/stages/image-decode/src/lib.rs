//! Decodes a PNG or JPEG file into an 8-bit RGB image tensor (height, width,
//! 3), the first step of a vision kit. JPEG files decode to the same pixels
//! as OpenCV's `imread` and Pillow give (libjpeg-turbo's arithmetic, see
//! `algobay_imaging::decode_jpeg`), so a model prepared with either sees
//! what it was trained on; grey files become three equal channels, as both
//! libraries make them. Config: `max_pixels` (default 40 megapixels): larger
//! images are refused before they are decoded, so a hostile file cannot
//! exhaust the stage's memory.
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage, Tensor};

#[derive(Debug)]
struct ImageDecode {
    max_pixels: u64,
}

fn too_large(w: u64, h: u64, max_pixels: u64) -> Result<(), String> {
    if w * h > max_pixels {
        return Err(format!(
            "input `image` is {w}x{h}, more than the {max_pixels} pixels this stage takes"
        ));
    }
    Ok(())
}

fn decode_jpeg(bytes: &[u8], max_pixels: u64) -> Result<Tensor, String> {
    let (w, h) =
        algobay_imaging::jpeg_dimensions(bytes).map_err(|e| format!("input `image`: {e}"))?;
    too_large(w as u64, h as u64, max_pixels)?;
    let img = algobay_imaging::decode_jpeg(bytes).map_err(|e| format!("input `image`: {e}"))?;
    let rgb = if img.channels == 1 {
        img.data.iter().flat_map(|&g| [g, g, g]).collect()
    } else {
        img.data
    };
    Ok(Tensor::from_u8(
        vec![img.height as u64, img.width as u64, 3],
        rgb,
    ))
}

fn decode(bytes: &[u8], max_pixels: u64) -> Result<Tensor, String> {
    if bytes.starts_with(&[0xFF, 0xD8]) {
        return decode_jpeg(bytes, max_pixels);
    }
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("input `image`: {e}"))?;
    match reader.format() {
        Some(image::ImageFormat::Png) => {}
        _ => return Err("input `image` is neither a PNG nor a JPEG file".into()),
    }
    let (w, h) = reader
        .into_dimensions()
        .map_err(|e| format!("input `image`: {e}"))?;
    too_large(u64::from(w), u64::from(h), max_pixels)?;
    let img = image::load_from_memory(bytes).map_err(|e| format!("input `image`: {e}"))?;
    let rgb = img.to_rgb8();
    Ok(Tensor::from_u8(
        vec![u64::from(rgb.height()), u64::from(rgb.width()), 3],
        rgb.into_raw(),
    ))
}

impl Stage for ImageDecode {
    fn contract() -> Contract {
        Contract::new()
            .input("image", "bytes")
            .output("pixels", "u8[?,?,3]")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let max_pixels = config.usize_or("max_pixels", 40_000_000)? as u64;
        if max_pixels == 0 {
            return Err("config field `max_pixels` must be at least 1".into());
        }
        Ok(ImageDecode { max_pixels })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let t = decode(inputs.bytes("image")?, self.max_pixels)?;
        Ok(Outputs::new().tensor("pixels", t))
    }
}

algobay_stage::stage!(ImageDecode);

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32, px: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        image::write_buffer_with_format(
            &mut std::io::Cursor::new(&mut out),
            px,
            w,
            h,
            image::ExtendedColorType::L8,
            image::ImageFormat::Png,
        )
        .unwrap();
        out
    }

    #[test]
    fn a_gray_png_becomes_rgb_pixels_in_height_width_channel_order() {
        let t = decode(&png(2, 1, &[10, 200]), 100).unwrap();
        assert_eq!(t.shape, vec![1, 2, 3]);
        assert_eq!(t.as_u8().unwrap(), &[10, 10, 10, 200, 200, 200]);
    }

    #[test]
    fn other_formats_and_oversized_images_are_refused_by_name() {
        let err = decode(b"GIF89a....", 100).unwrap_err();
        assert!(err.contains("neither a PNG nor a JPEG"), "{err}");
        let err = decode(&png(20, 10, &[0; 200]), 100).unwrap_err();
        assert!(err.contains("20x10, more than the 100 pixels"), "{err}");
        let mut truncated = png(4, 4, &[7; 16]);
        truncated.truncate(truncated.len() / 2);
        assert!(decode(&truncated, 100).is_err());
    }
}
