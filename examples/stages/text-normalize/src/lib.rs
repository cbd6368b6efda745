//! Normalises text before features are taken from it: full-width ASCII forms
//! and the ideographic space become ASCII, letters lower case, runs of white
//! space one space (`algobay_stage::text::normalize`). No config.
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage};

#[derive(Debug)]
struct TextNormalize;

impl Stage for TextNormalize {
    fn contract() -> Contract {
        Contract::new()
            .input("text", "text")
            .output("normalized", "text")
    }

    fn new(_config: &Config) -> Result<Self, String> {
        Ok(TextNormalize)
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let t = inputs.text("text")?;
        Ok(Outputs::new().text("normalized", algobay_stage::text::normalize(t)))
    }
}

algobay_stage::stage!(TextNormalize);

#[cfg(test)]
mod tests {
    #[test]
    fn full_width_letters_become_lower_case_ascii() {
        assert_eq!(algobay_stage::text::normalize("ＧＯＯＤ　书"), "good 书");
    }
}
