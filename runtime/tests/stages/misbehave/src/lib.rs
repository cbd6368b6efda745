//! Doubles `x`, or misbehaves in the way the `mode` input names.
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage, Tensor};

struct Misbehave;

impl Stage for Misbehave {
    fn contract() -> Contract {
        Contract::new()
            .input("x", "f32[3]")
            .input("mode", "text")
            .output("y", "f32[3]")
    }

    fn new(_config: &Config) -> Result<Self, String> {
        Ok(Misbehave)
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let x = inputs.tensor("x")?.to_f32()?;
        match inputs.text("mode")? {
            "ok" => {}
            "loop" => {
                let mut i: u64 = 0;
                loop {
                    i = std::hint::black_box(i.wrapping_add(1));
                }
            }
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "panic" => panic!("deliberate failure for request {:?}", x),
            "wrong_shape" => {
                return Ok(Outputs::new().tensor("y", Tensor::from_f32(vec![2], &[1.0, 2.0])))
            }
            "error" => return Err("the request asked for an error".into()),
            other => return Err(format!("unknown mode `{other}`")),
        }
        let y: Vec<f32> = x.iter().map(|v| v * 2.0).collect();
        Ok(Outputs::new().tensor("y", Tensor::from_f32(vec![3], &y)))
    }
}

algobay_stage::stage!(Misbehave);
