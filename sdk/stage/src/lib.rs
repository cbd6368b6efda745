//! Write an Algobay stage in a few lines.
//!
//! A stage is one step of a kit's pipeline that runs as WebAssembly inside the
//! host's sandbox: it has no files, network or clock, only the named values it
//! is given and the assets its kit ships. Implement [`Stage`], name the type
//! with [`stage!`], and build the crate as a component:
//!
//! ```text
//! cargo build --release --target wasm32-wasip2 -p my-stage
//! ```
//!
//! ```ignore
//! use algobay_stage::{Config, Contract, Inputs, Outputs, Stage, Tensor};
//!
//! struct Scale { factor: f32 }
//!
//! impl Stage for Scale {
//!     fn contract() -> Contract {
//!         Contract::new().input("x", "f32[?]").output("y", "f32[?]")
//!     }
//!     fn new(config: &Config) -> Result<Self, String> {
//!         Ok(Scale { factor: config.f32_or("factor", 1.0)? })
//!     }
//!     fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
//!         let x = inputs.tensor("x")?;
//!         let y: Vec<f32> = x.to_f32()?.iter().map(|v| v * self.factor).collect();
//!         Ok(Outputs::new().tensor("y", Tensor::from_f32(x.shape.clone(), &y)))
//!     }
//! }
//!
//! algobay_stage::stage!(Scale);
//! ```
//!
//! # Layout
//! - [`bindings`]: the types generated from `wit/stage.wit`.
//! - [`Stage`], [`Config`], [`Inputs`], [`Outputs`], [`Contract`]: the
//!   friendlier layer most stages use.
//! - [`imaging`]: pre-processing that gives Pillow's and OpenCV's bytes.
//! - [`text`]: PII masking, normalisation and hashed character n-grams.

#[allow(missing_docs, missing_debug_implementations, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "stage",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "export_stage",
        default_bindings_module: "algobay_stage::bindings",
    });
}

pub use bindings::algobay::stage::types::{Asset, Dtype, Named, Port, Tensor, Value};

/// Resize, grayscale, channel order and layout exactly as Pillow and OpenCV do them.
pub use algobay_audio as audio;
pub use algobay_imaging as imaging;
pub use algobay_text as text;
pub use bindings::Guest;

/// What a stage declares about its ports.
pub type Contract = bindings::algobay::stage::types::Contract;

impl Contract {
    /// A contract with no ports yet.
    pub fn new() -> Self {
        Contract {
            inputs: Vec::new(),
            outputs: Vec::new(),
        }
    }
    /// Adds an input port, e.g. `input("image", "bytes")` or `input("x", "f32[1,3,?,?]")`.
    pub fn input(mut self, name: &str, ty: &str) -> Self {
        self.inputs.push(Port {
            name: name.into(),
            ty: ty.into(),
        });
        self
    }
    /// Adds an output port.
    pub fn output(mut self, name: &str, ty: &str) -> Self {
        self.outputs.push(Port {
            name: name.into(),
            ty: ty.into(),
        });
        self
    }
}

impl Default for Contract {
    fn default() -> Self {
        Self::new()
    }
}

/// A stage: built once per instance from its configuration, then called once per request.
pub trait Stage: Sized + 'static {
    /// The ports the stage reads and writes.
    fn contract() -> Contract;
    /// Builds the stage from the kit's configuration for this step.
    fn new(config: &Config) -> Result<Self, String>;
    /// Processes one request.
    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String>;
}

/// The configuration of one step: a JSON object plus the assets the kit ships for it.
#[derive(Debug)]
pub struct Config {
    json: serde_json::Value,
    assets: Vec<Asset>,
}

impl Config {
    /// Parses the configuration handed over by the host.
    pub fn parse(config: &str, assets: Vec<Asset>) -> Result<Self, String> {
        let json: serde_json::Value = if config.trim().is_empty() {
            serde_json::Value::Object(Default::default())
        } else {
            serde_json::from_str(config).map_err(|e| format!("config is not valid json: {e}"))?
        };
        if !json.is_object() {
            return Err("config must be a json object".into());
        }
        Ok(Config { json, assets })
    }

    /// The raw JSON value of a key, if present.
    pub fn get(&self, key: &str) -> Option<&serde_json::Value> {
        self.json.get(key)
    }

    /// A number, or `default` when the key is absent.
    pub fn f64_or(&self, key: &str, default: f64) -> Result<f64, String> {
        match self.json.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| format!("config field `{key}` must be a number")),
        }
    }

    /// A number as f32, or `default` when the key is absent.
    pub fn f32_or(&self, key: &str, default: f32) -> Result<f32, String> {
        self.f64_or(key, default as f64).map(|v| v as f32)
    }

    /// A non-negative integer, or `default` when the key is absent.
    pub fn usize_or(&self, key: &str, default: usize) -> Result<usize, String> {
        match self.json.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_u64()
                .map(|v| v as usize)
                .ok_or_else(|| format!("config field `{key}` must be a non-negative integer")),
        }
    }

    /// A boolean, or `default` when the key is absent.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, String> {
        match self.json.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| format!("config field `{key}` must be a boolean")),
        }
    }

    /// A list of strings, or `None` when the key is absent.
    pub fn strings(&self, key: &str) -> Result<Option<Vec<String>>, String> {
        match self.json.get(key) {
            None => Ok(None),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| format!("config field `{key}` must be a list of strings"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(format!("config field `{key}` must be a list of strings")),
        }
    }

    /// A list of numbers, or `None` when the key is absent.
    pub fn f32s(&self, key: &str) -> Result<Option<Vec<f32>>, String> {
        match self.json.get(key) {
            None => Ok(None),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_f64()
                        .map(|f| f as f32)
                        .ok_or_else(|| format!("config field `{key}` must be a list of numbers"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(format!("config field `{key}` must be a list of numbers")),
        }
    }

    /// The bytes of an asset the kit ships for this step.
    pub fn asset(&self, name: &str) -> Result<&[u8], String> {
        self.assets
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.data.as_slice())
            .ok_or_else(|| format!("asset `{name}` is missing from the step's assets"))
    }

    /// An asset decoded as UTF-8 text.
    pub fn asset_text(&self, name: &str) -> Result<&str, String> {
        std::str::from_utf8(self.asset(name)?).map_err(|_| format!("asset `{name}` is not utf-8"))
    }
}

/// The named values a request hands to the stage.
#[derive(Debug)]
pub struct Inputs {
    values: Vec<Named>,
}

impl Inputs {
    /// Wraps the values the host passed in.
    pub fn new(values: Vec<Named>) -> Self {
        Inputs { values }
    }

    fn find(&self, name: &str) -> Result<&Value, String> {
        self.values
            .iter()
            .find(|n| n.name == name)
            .map(|n| &n.value)
            .ok_or_else(|| format!("input `{name}` is missing"))
    }

    /// Takes a value out by name, leaving nothing behind.
    pub fn take(&mut self, name: &str) -> Result<Value, String> {
        let pos = self
            .values
            .iter()
            .position(|n| n.name == name)
            .ok_or_else(|| format!("input `{name}` is missing"))?;
        Ok(self.values.swap_remove(pos).value)
    }

    /// A tensor input.
    pub fn tensor(&self, name: &str) -> Result<&Tensor, String> {
        match self.find(name)? {
            Value::Tensor(t) => Ok(t),
            _ => Err(format!("input `{name}` must be a tensor")),
        }
    }

    /// An 8-bit (height, width, channels) tensor input taken out as an
    /// image, its bytes moved rather than copied.
    pub fn take_image(&mut self, name: &str) -> Result<imaging::Image, String> {
        match self.take(name)? {
            Value::Tensor(t) => t.into_image(name),
            _ => Err(format!("input `{name}` must be a tensor")),
        }
    }

    /// A bytes input.
    pub fn bytes(&self, name: &str) -> Result<&[u8], String> {
        match self.find(name)? {
            Value::Bytes(b) => Ok(b),
            _ => Err(format!("input `{name}` must be bytes")),
        }
    }

    /// A text input.
    pub fn text(&self, name: &str) -> Result<&str, String> {
        match self.find(name)? {
            Value::Text(t) => Ok(t),
            _ => Err(format!("input `{name}` must be text")),
        }
    }

    /// A JSON input, parsed.
    pub fn json(&self, name: &str) -> Result<serde_json::Value, String> {
        match self.find(name)? {
            Value::Json(t) => serde_json::from_str(t)
                .map_err(|e| format!("input `{name}` is not valid json: {e}")),
            _ => Err(format!("input `{name}` must be json")),
        }
    }
}

/// The named values a stage returns.
#[derive(Debug, Default)]
pub struct Outputs {
    values: Vec<Named>,
}

impl Outputs {
    /// No outputs yet.
    pub fn new() -> Self {
        Outputs { values: Vec::new() }
    }
    /// Adds any value.
    pub fn value(mut self, name: &str, value: Value) -> Self {
        self.values.push(Named {
            name: name.into(),
            value,
        });
        self
    }
    /// Adds a tensor.
    pub fn tensor(self, name: &str, t: Tensor) -> Self {
        self.value(name, Value::Tensor(t))
    }
    /// Adds text.
    pub fn text(self, name: &str, t: impl Into<String>) -> Self {
        self.value(name, Value::Text(t.into()))
    }
    /// Adds bytes.
    pub fn bytes(self, name: &str, b: Vec<u8>) -> Self {
        self.value(name, Value::Bytes(b))
    }
    /// Adds a JSON value.
    pub fn json(self, name: &str, v: &serde_json::Value) -> Self {
        self.value(name, Value::Json(v.to_string()))
    }
    /// The values, in the order they were added.
    pub fn into_vec(self) -> Vec<Named> {
        self.values
    }
}

/// Size in bytes of one element of `dtype`.
pub fn dtype_size(dtype: Dtype) -> usize {
    match dtype {
        Dtype::F32 | Dtype::I32 => 4,
        Dtype::F16 => 2,
        Dtype::I64 => 8,
        Dtype::U8 | Dtype::I8 | Dtype::Bool => 1,
    }
}

impl Tensor {
    /// Number of elements the shape holds.
    pub fn numel(&self) -> usize {
        self.shape.iter().map(|&d| d as usize).product()
    }

    /// A tensor of f32 values.
    pub fn from_f32(shape: Vec<u64>, values: &[f32]) -> Tensor {
        let mut data = Vec::with_capacity(values.len() * 4);
        for v in values {
            data.extend_from_slice(&v.to_le_bytes());
        }
        Tensor {
            dtype: Dtype::F32,
            shape,
            data,
        }
    }

    /// A tensor of i64 values.
    pub fn from_i64(shape: Vec<u64>, values: &[i64]) -> Tensor {
        let mut data = Vec::with_capacity(values.len() * 8);
        for v in values {
            data.extend_from_slice(&v.to_le_bytes());
        }
        Tensor {
            dtype: Dtype::I64,
            shape,
            data,
        }
    }

    /// A tensor of u8 values.
    pub fn from_u8(shape: Vec<u64>, values: Vec<u8>) -> Tensor {
        Tensor {
            dtype: Dtype::U8,
            shape,
            data: values,
        }
    }

    fn check(&self, want: Dtype) -> Result<(), String> {
        if self.dtype != want {
            return Err(format!(
                "tensor has dtype {:?}, expected {:?}",
                self.dtype, want
            ));
        }
        if self.data.len() != self.numel() * dtype_size(want) {
            return Err(format!(
                "tensor data holds {} bytes, shape {:?} needs {}",
                self.data.len(),
                self.shape,
                self.numel() * dtype_size(want)
            ));
        }
        Ok(())
    }

    /// The values of an f32 tensor.
    pub fn to_f32(&self) -> Result<Vec<f32>, String> {
        self.check(Dtype::F32)?;
        Ok(bytemuck::pod_collect_to_vec(&self.data))
    }

    /// The values of an f32 tensor, borrowed in place when the bytes are aligned
    /// (they are, as the host hands them over), copied otherwise.
    pub fn as_f32(&self) -> Result<std::borrow::Cow<'_, [f32]>, String> {
        self.check(Dtype::F32)?;
        Ok(match bytemuck::try_cast_slice::<u8, f32>(&self.data) {
            Ok(s) => std::borrow::Cow::Borrowed(s),
            Err(_) => std::borrow::Cow::Owned(bytemuck::pod_collect_to_vec(&self.data)),
        })
    }

    /// The values of an i64 tensor.
    pub fn to_i64(&self) -> Result<Vec<i64>, String> {
        self.check(Dtype::I64)?;
        Ok(bytemuck::pod_collect_to_vec(&self.data))
    }

    /// The values of a u8 tensor.
    pub fn as_u8(&self) -> Result<&[u8], String> {
        self.check(Dtype::U8)?;
        Ok(&self.data)
    }

    /// The (width, height, channels) of an 8-bit (height, width, channels)
    /// tensor; `port` names it in errors.
    fn image_dims(&self, port: &str) -> Result<(usize, usize, usize), String> {
        let [h, w, c] = self.shape[..] else {
            return Err(format!(
                "input `{port}`: shape {:?}, expected [height, width, channels]",
                self.shape
            ));
        };
        self.check(Dtype::U8)
            .map_err(|e| format!("input `{port}`: {e}"))?;
        Ok((w as usize, h as usize, c as usize))
    }

    /// The image an 8-bit (height, width, channels) tensor holds; `port`
    /// names it in errors.
    pub fn to_image(&self, port: &str) -> Result<imaging::Image, String> {
        let (w, h, c) = self.image_dims(port)?;
        imaging::Image::new(w, h, c, self.data.clone()).map_err(|e| format!("input `{port}`: {e}"))
    }

    /// As [`Tensor::to_image`], but the image takes the tensor's bytes
    /// rather than a copy of them.
    pub fn into_image(self, port: &str) -> Result<imaging::Image, String> {
        let (w, h, c) = self.image_dims(port)?;
        imaging::Image::new(w, h, c, self.data).map_err(|e| format!("input `{port}`: {e}"))
    }

    /// An image as an 8-bit (height, width, channels) tensor.
    pub fn from_image(img: imaging::Image) -> Tensor {
        let shape = vec![img.height as u64, img.width as u64, img.channels as u64];
        Tensor::from_u8(shape, img.data)
    }
}

/// Sends a line to the host's log.
pub fn log(message: &str) {
    bindings::log(message);
}

/// Routes panic messages to the host, which reports them with the trap.
pub fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            bindings::log(&format!("stage panicked: {info}"));
        }));
    });
}

/// Exports a type that implements [`Stage`] as this component's stage.
#[macro_export]
macro_rules! stage {
    ($ty:ty) => {
        struct __AlgobayStageExport;

        ::std::thread_local! {
            static __ALGOBAY_STAGE: ::core::cell::RefCell<::core::option::Option<$ty>> =
                const { ::core::cell::RefCell::new(::core::option::Option::None) };
        }

        impl $crate::Guest for __AlgobayStageExport {
            fn describe() -> $crate::Contract {
                <$ty as $crate::Stage>::contract()
            }

            fn configure(
                config: ::std::string::String,
                assets: ::std::vec::Vec<$crate::Asset>,
            ) -> ::core::result::Result<(), ::std::string::String> {
                $crate::install_panic_hook();
                let config = $crate::Config::parse(&config, assets)?;
                let stage = <$ty as $crate::Stage>::new(&config)?;
                __ALGOBAY_STAGE.with(|s| *s.borrow_mut() = ::core::option::Option::Some(stage));
                Ok(())
            }

            fn process(
                inputs: ::std::vec::Vec<$crate::Named>,
            ) -> ::core::result::Result<::std::vec::Vec<$crate::Named>, ::std::string::String> {
                __ALGOBAY_STAGE.with(|s| {
                    let mut s = s.borrow_mut();
                    let stage = s.as_mut().ok_or_else(|| "stage is not configured".to_string())?;
                    <$ty as $crate::Stage>::process(stage, $crate::Inputs::new(inputs))
                        .map($crate::Outputs::into_vec)
                })
            }
        }

        $crate::bindings::export_stage!(__AlgobayStageExport with_types_in $crate::bindings);
    };
}
