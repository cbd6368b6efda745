//! Masks personal data in text before it is processed or kept: e-mail
//! addresses, web addresses and phone numbers become `<email>`, `<url>` and
//! `<phone>` (`algobay_stage::text::mask_pii`). No config.
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage};

#[derive(Debug)]
struct PiiMask;

impl Stage for PiiMask {
    fn contract() -> Contract {
        Contract::new()
            .input("text", "text")
            .output("masked", "text")
    }

    fn new(_config: &Config) -> Result<Self, String> {
        Ok(PiiMask)
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let t = inputs.text("text")?;
        Ok(Outputs::new().text("masked", algobay_stage::text::mask_pii(t)))
    }
}

algobay_stage::stage!(PiiMask);

#[cfg(test)]
mod tests {
    #[test]
    fn an_address_in_a_review_is_masked() {
        assert_eq!(
            algobay_stage::text::mask_pii("书很好，详见 www.example.com 或 13800138000"),
            "书很好，详见 <url> 或 <phone>"
        );
    }
}
