//! Non-maximum suppression: of detections whose boxes overlap by more than
//! `iou` (intersection over union of their bounding rectangles, default
//! 0.5), only the highest-scored stays; the others go, and the kept ones
//! keep their order. Detections are a JSON list of objects with `points`
//! (polygon corners `[x, y]`, or two for a rectangle) and a score under
//! `score_key` (default `score`); other fields pass through.
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage};
use serde_json::Value as J;

#[derive(Debug)]
struct Nms {
    iou: f64,
    score_key: String,
}

/// (x0, y0, x1, y1) of a detection's points.
fn rect(d: &J, i: usize) -> Result<(f64, f64, f64, f64), String> {
    let bad = || format!("detection {i}: `points` must list [x, y] corners");
    let pts = d
        .get("points")
        .and_then(J::as_array)
        .filter(|p| p.len() >= 2)
        .ok_or_else(bad)?;
    let mut r = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for p in pts {
        let xy = p.as_array().filter(|a| a.len() == 2).ok_or_else(bad)?;
        let (x, y) = (
            xy[0].as_f64().ok_or_else(bad)?,
            xy[1].as_f64().ok_or_else(bad)?,
        );
        r = (r.0.min(x), r.1.min(y), r.2.max(x), r.3.max(y));
    }
    Ok(r)
}

fn iou(a: (f64, f64, f64, f64), b: (f64, f64, f64, f64)) -> f64 {
    let w = (a.2.min(b.2) - a.0.max(b.0)).max(0.0);
    let h = (a.3.min(b.3) - a.1.max(b.1)).max(0.0);
    let inter = w * h;
    let area = |r: (f64, f64, f64, f64)| (r.2 - r.0) * (r.3 - r.1);
    let union = area(a) + area(b) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

impl Nms {
    fn suppress(&self, dets: &[J]) -> Result<Vec<J>, String> {
        let rects = dets
            .iter()
            .enumerate()
            .map(|(i, d)| rect(d, i))
            .collect::<Result<Vec<_>, _>>()?;
        let scores = dets
            .iter()
            .enumerate()
            .map(|(i, d)| {
                d.get(&self.score_key)
                    .and_then(J::as_f64)
                    .ok_or(format!("detection {i}: no number `{}`", self.score_key))
            })
            .collect::<Result<Vec<f64>, String>>()?;
        let mut order: Vec<usize> = (0..dets.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
        let mut keep = vec![false; dets.len()];
        let mut kept: Vec<usize> = Vec::new();
        for i in order {
            if kept.iter().all(|&k| iou(rects[i], rects[k]) <= self.iou) {
                keep[i] = true;
                kept.push(i);
            }
        }
        Ok(dets
            .iter()
            .zip(keep)
            .filter(|(_, k)| *k)
            .map(|(d, _)| d.clone())
            .collect())
    }
}

impl Stage for Nms {
    fn contract() -> Contract {
        Contract::new()
            .input("detections", "json")
            .output("kept", "json")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let iou = config.f64_or("iou", 0.5)?;
        if !(0.0..=1.0).contains(&iou) {
            return Err(format!("config field `iou` is {iou}; it must be 0 to 1"));
        }
        let score_key = match config.get("score_key") {
            None => "score".to_owned(),
            Some(v) => v
                .as_str()
                .ok_or("config field `score_key` must be text")?
                .to_owned(),
        };
        Ok(Nms { iou, score_key })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let dets = inputs.json("detections")?;
        let list = dets
            .as_array()
            .ok_or("input `detections` must be a json list")?;
        Ok(Outputs::new().json("kept", &J::Array(self.suppress(list)?)))
    }
}

algobay_stage::stage!(Nms);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_overlapping_weaker_box_goes_and_order_is_kept() {
        let n = Nms {
            iou: 0.5,
            score_key: "score".into(),
        };
        let dets = vec![
            json!({"points": [[0, 0], [10, 10]], "score": 0.6, "id": "a"}),
            json!({"points": [[50, 50], [60, 60]], "score": 0.7, "id": "b"}),
            json!({"points": [[1, 1], [11, 11]], "score": 0.9, "id": "c"}),
        ];
        let out = n.suppress(&dets).unwrap();
        let kept: Vec<&str> = out.iter().map(|d| d["id"].as_str().unwrap()).collect();
        assert_eq!(kept, ["b", "c"]);
        assert!((iou((0.0, 0.0, 2.0, 2.0), (1.0, 0.0, 3.0, 2.0)) - 1.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn a_detection_without_points_or_score_is_named() {
        let n = Nms {
            iou: 0.5,
            score_key: "det_score".into(),
        };
        let err = n
            .suppress(&[json!({"points": [[0, 0], [1, 1]], "score": 1})])
            .unwrap_err();
        assert!(err.contains("detection 0: no number `det_score`"), "{err}");
        assert!(n
            .suppress(&[json!({"points": 3})])
            .unwrap_err()
            .contains("detection 0: `points`"));
    }
}
