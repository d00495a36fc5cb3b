//! GGUF metadata values and typed accessors.

use std::collections::HashMap;
use std::fmt;

use crate::GgufError;

/// GGUF metadata value type ids (the `gguf_type` enum of the spec).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    /// The value type with this id, if any.
    pub fn from_id(id: u32) -> Option<Self> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// Smallest number of bytes one value of this type takes in a file. Used to bound counts
    /// read from the file before anything is allocated.
    pub(crate) fn min_encoded_size(self) -> usize {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 | String => 8,
            Array => 12,
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ValueType::U8 => "u8",
            ValueType::I8 => "i8",
            ValueType::U16 => "u16",
            ValueType::I16 => "i16",
            ValueType::U32 => "u32",
            ValueType::I32 => "i32",
            ValueType::F32 => "f32",
            ValueType::Bool => "bool",
            ValueType::String => "string",
            ValueType::Array => "array",
            ValueType::U64 => "u64",
            ValueType::I64 => "i64",
            ValueType::F64 => "f64",
        };
        f.write_str(s)
    }
}

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    /// An array: its element type and items (all of that type).
    Array(ValueType, Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    /// The value's type.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(..) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// A readable type name, `array<string>` for arrays.
    pub fn type_name(&self) -> String {
        match self {
            Value::Array(t, _) => format!("array<{t}>"),
            v => v.value_type().to_string(),
        }
    }

    /// Any integer value as i128 (lossless), for lenient integer accessors.
    pub fn as_integer(&self) -> Option<i128> {
        Some(match *self {
            Value::U8(v) => v.into(),
            Value::I8(v) => v.into(),
            Value::U16(v) => v.into(),
            Value::I16(v) => v.into(),
            Value::U32(v) => v.into(),
            Value::I32(v) => v.into(),
            Value::U64(v) => v.into(),
            Value::I64(v) => v.into(),
            _ => return None,
        })
    }
}

/// Ordered metadata with lookup by key. Keys are unique (the parser rejects duplicates).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metadata {
    entries: Vec<(String, Value)>,
    index: HashMap<String, usize>,
}

macro_rules! scalar_getters {
    ($($fn:ident => $variant:ident : $ty:ty),* $(,)?) => {
        $(
            #[doc = concat!("The `", stringify!($ty), "` at `key`; an error names the key and the actual type.")]
            pub fn $fn(&self, key: &str) -> Result<$ty, GgufError> {
                match self.require(key)? {
                    Value::$variant(v) => Ok(v.clone()),
                    other => Err(mismatch(key, stringify!($ty), other)),
                }
            }
        )*
    };
}

macro_rules! array_getters {
    ($($fn:ident => $variant:ident : $ty:ty),* $(,)?) => {
        $(
            #[doc = concat!("The array of `", stringify!($ty), "` at `key`.")]
            pub fn $fn(&self, key: &str) -> Result<Vec<$ty>, GgufError> {
                let expected = concat!("array<", stringify!($ty), ">");
                match self.require(key)? {
                    Value::Array(ValueType::$variant, items) => Ok(items
                        .iter()
                        .filter_map(|v| match v {
                            Value::$variant(x) => Some(x.clone()),
                            _ => None,
                        })
                        .collect()),
                    other => Err(mismatch(key, expected, other)),
                }
            }
        )*
    };
}

fn mismatch(key: &str, expected: &'static str, actual: &Value) -> GgufError {
    GgufError::TypeMismatch {
        key: key.to_string(),
        expected,
        actual: actual.type_name(),
    }
}

impl Metadata {
    /// Insert a key; returns `false` (and changes nothing) if it was already present.
    pub fn insert(&mut self, key: String, value: Value) -> bool {
        if self.index.contains_key(&key) {
            return false;
        }
        self.index.insert(key.clone(), self.entries.len());
        self.entries.push((key, value));
        true
    }

    /// Remove a key, returning its value (for loaders that move a large array elsewhere).
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let i = self.index.remove(key)?;
        let (_, v) = self.entries.remove(i);
        for idx in self.index.values_mut() {
            if *idx > i {
                *idx -= 1;
            }
        }
        Some(v)
    }

    /// Entries in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value at `key`, if any.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(|&i| &self.entries[i].1)
    }

    /// The value at `key`, or [`GgufError::KeyNotFound`].
    pub fn require(&self, key: &str) -> Result<&Value, GgufError> {
        self.get(key).ok_or_else(|| GgufError::KeyNotFound {
            key: key.to_string(),
        })
    }

    scalar_getters! {
        get_u8 => U8: u8, get_i8 => I8: i8, get_u16 => U16: u16, get_i16 => I16: i16,
        get_u32 => U32: u32, get_i32 => I32: i32, get_u64 => U64: u64, get_i64 => I64: i64,
        get_f32 => F32: f32, get_f64 => F64: f64, get_bool => Bool: bool,
    }

    array_getters! {
        get_u8_array => U8: u8, get_i8_array => I8: i8, get_u16_array => U16: u16,
        get_i16_array => I16: i16, get_u32_array => U32: u32, get_i32_array => I32: i32,
        get_u64_array => U64: u64, get_i64_array => I64: i64, get_f32_array => F32: f32,
        get_f64_array => F64: f64, get_bool_array => Bool: bool,
    }

    /// The string at `key`.
    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        match self.require(key)? {
            Value::String(s) => Ok(s),
            other => Err(mismatch(key, "string", other)),
        }
    }

    /// The array of strings at `key`, borrowed.
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>, GgufError> {
        match self.require(key)? {
            Value::Array(ValueType::String, items) => Ok(items
                .iter()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s.as_str()),
                    _ => None,
                })
                .collect()),
            other => Err(mismatch(key, "array<string>", other)),
        }
    }

    /// Any unsigned or signed integer at `key` that fits `usize` (converters differ in
    /// whether they write u32, u64 or i32 for counts).
    pub fn get_usize(&self, key: &str) -> Result<usize, GgufError> {
        let v = self.require(key)?;
        let i = v.as_integer().ok_or_else(|| mismatch(key, "integer", v))?;
        usize::try_from(i).map_err(|_| GgufError::ValueOutOfRange {
            key: key.to_string(),
            value: i.to_string(),
        })
    }

    /// An f32 at `key`, also accepting f64 (narrowed).
    pub fn get_float(&self, key: &str) -> Result<f32, GgufError> {
        match self.require(key)? {
            Value::F32(v) => Ok(*v),
            Value::F64(v) => Ok(*v as f32),
            other => Err(mismatch(key, "f32", other)),
        }
    }
}
