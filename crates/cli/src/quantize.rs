//! `edgeinfer quantize IN.gguf OUT.gguf TYPE`: the files llama-quantize makes, bit for bit.
//!
//! The per-tensor types follow llama.cpp's rules ([`choice`]); every tensor is converted with
//! the kernels' quantizers (ggml's reference algorithms, bit-identical to ggml's bytes), the
//! metadata is copied with `general.quantization_version` and `general.file_type` set as
//! llama.cpp sets them, and tensors are written in llama.cpp's order, so the whole output file
//! is the same bytes as llama-quantize's (checked on fixtures by `tests/quantize.rs`).
//!
//! The input stays memory-mapped; tensors are converted one at a time, rows in parallel (rayon),
//! so memory holds about one output tensor. The output is written to a temporary file beside
//! OUT and renamed over it only once complete: a failure leaves no partial file and never
//! touches the input.

mod choice;

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use edgeinfer_gguf::{GgufFile, GgufStreamWriter, TensorEntry, TensorInfo, Value};
use edgeinfer_tensor::DType;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

pub use choice::Mix;
use choice::{choose, llama_order, Choice, ModelFacts, TensorDesc};

/// llama.cpp's `GGML_QNT_VERSION`, written as `general.quantization_version`.
const QUANTIZATION_VERSION: u32 = 2;

/// Elements converted per parallel work item (whole rows, at least one).
const CHUNK_ELEMENTS: usize = 1 << 16;

#[derive(clap::Args)]
#[command(after_help = TYPES_HELP)]
pub struct QuantizeArgs {
    /// Input GGUF: F32, F16, BF16, or any type edgeinfer dequantizes (requantizing is lossy).
    input: PathBuf,
    /// OUT.gguf TYPE (with --dry-run, only TYPE).
    #[arg(value_name = "OUT.gguf TYPE", num_args = 1..=2, required = true)]
    rest: Vec<String>,
    /// One type for every quantizable tensor: no per-tensor mix, no fallback.
    #[arg(long)]
    pure: bool,
    /// Print the type chosen for every tensor and the sizes; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Importance matrix from llama-imatrix (not supported yet).
    #[arg(long, value_name = "FILE")]
    imatrix: Option<PathBuf>,
    /// Threads for the conversion (default: all cores).
    #[arg(short = 't', long)]
    threads: Option<usize>,
}

const TYPES_HELP: &str = "\
TYPE (as llama-quantize's; F16, BF16 and F32 convert every 2-D weight):
  Q4_0 Q4_1 Q5_0 Q5_1 Q8_0      one type, output/tied embedding Q6_K (Q8_0 if its rows are not 256s)
  Q2_K Q3_K_S Q3_K_M Q3_K_L     K-quant mixes: attn_v, attn_output, ffn_down get more bits
  Q4_K_S Q4_K_M Q5_K_S Q5_K_M   (_M: in the first/last eighth and every third layer)
  Q6_K                          6-bit K-quant
  F16 BF16 F32                  float types
Q3_K, Q4_K, Q5_K mean the _M mixes. 1-D tensors (norms, biases) keep their type.";

/// One tensor of the output: where it comes from and what it becomes.
struct Planned<'a> {
    info: &'a TensorInfo,
    desc: TensorDesc,
    choice: Choice,
}

impl Planned<'_> {
    fn converts(&self) -> bool {
        self.choice.dtype != self.info.dtype
    }
    fn out_bytes(&self) -> usize {
        self.choice
            .dtype
            .bytes_for(self.info.n_elements())
            .unwrap_or(0)
    }
}

pub fn run(out: &mut impl Write, args: &QuantizeArgs) -> Result<()> {
    let (output, type_name) = match (args.rest.as_slice(), args.dry_run) {
        ([t], true) => (None, t.as_str()),
        ([o, t], _) => (Some(PathBuf::from(o)), t.as_str()),
        ([_], false) => bail!("missing TYPE: edgeinfer quantize IN.gguf OUT.gguf TYPE"),
        _ => bail!("expected OUT.gguf TYPE"),
    };
    let mix = Mix::parse(type_name)?;
    if let Some(m) = &args.imatrix {
        bail!(
            "--imatrix {}: importance matrices are not supported yet; edgeinfer quantizes as \
             llama-quantize does without one",
            m.display()
        );
    }
    let input = &args.input;
    let file = GgufFile::open(input).with_context(|| format!("reading {}", input.display()))?;
    let facts = ModelFacts::from_metadata(file.metadata())
        .with_context(|| format!("{}", input.display()))?;
    let plan = plan(&file, &facts, mix, args.pure)?;
    check_convertible(&plan)?;
    match output {
        None => print_table(out, &plan, mix),
        Some(output) => {
            let pool = match args.threads {
                Some(n) => Some(
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(n.max(1))
                        .build()
                        .context("building the thread pool")?,
                ),
                None => None,
            };
            let work = || write_output(&file, &plan, mix, input, &output);
            let summary = match pool {
                Some(p) => p.install(work)?,
                None => work()?,
            };
            writeln!(out, "{summary}")?;
            Ok(())
        }
    }
}

/// The output's tensors in llama.cpp's order with their chosen types.
fn plan<'a>(
    file: &'a GgufFile,
    facts: &ModelFacts,
    mix: Mix,
    pure: bool,
) -> Result<Vec<Planned<'a>>> {
    let mut descs: Vec<TensorDesc> = file
        .tensor_infos()
        .iter()
        .map(|t| TensorDesc::new(&t.name, &t.shape, t.dtype))
        .collect();
    llama_order(&mut descs);
    let choices = choose(&descs, facts, mix, pure)?;
    descs
        .into_iter()
        .zip(choices)
        .map(|(desc, choice)| {
            let info = file.tensor_info(&desc.name)?;
            Ok(Planned { info, desc, choice })
        })
        .collect()
}

fn check_convertible(plan: &[Planned<'_>]) -> Result<()> {
    for p in plan.iter().filter(|p| p.converts()) {
        let from = p.info.dtype;
        if edgeinfer_kernels::format(from).is_none() {
            bail!(
                "tensor {:?} is {from}, which edgeinfer cannot dequantize yet (it would become {})",
                p.info.name,
                p.choice.dtype
            );
        }
        let to = p.choice.dtype;
        if edgeinfer_kernels::format(to)
            .and_then(|f| f.from_f32)
            .is_none()
        {
            bail!("tensor {:?}: no quantizer for {to}", p.info.name);
        }
    }
    Ok(())
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn print_table(out: &mut impl Write, plan: &[Planned<'_>], mix: Mix) -> Result<()> {
    let n = plan.len();
    writeln!(
        out,
        "{:>9}  {:<40} {:>18}  {:>6}    {:<6} {:>10}",
        "", "tensor", "shape", "from", "to", "MiB"
    )?;
    for (i, p) in plan.iter().enumerate() {
        let shape: Vec<String> = p.desc.shape.iter().map(|d| d.to_string()).collect();
        let note = match p.choice.fell_back_from {
            Some(w) => format!(
                "  ({w} needs rows of {}, these have {})",
                w.block_size(),
                p.desc.shape[0]
            ),
            None if !p.choice.quantizable => "  (kept)".into(),
            None => String::new(),
        };
        writeln!(
            out,
            "[{:>3}/{:>3}]  {:<40} {:>18}  {:>6} -> {:<6} {:>10.3}{note}",
            i + 1,
            n,
            p.info.name,
            shape.join(" x "),
            p.info.dtype.name(),
            p.choice.dtype.name(),
            mib(p.out_bytes()),
        )?;
    }
    let (before, after) = totals(plan);
    let elements: usize = plan.iter().map(|p| p.info.n_elements()).sum();
    writeln!(
        out,
        "{mix}: {:.2} MiB ({:.2} bits per weight) -> {:.2} MiB ({:.2} bits per weight); {} of {n} tensors fell back",
        mib(before),
        before as f64 * 8.0 / elements.max(1) as f64,
        mib(after),
        after as f64 * 8.0 / elements.max(1) as f64,
        plan.iter().filter(|p| p.choice.fell_back_from.is_some()).count(),
        mix = mix.name(),
    )?;
    Ok(())
}

fn totals(plan: &[Planned<'_>]) -> (usize, usize) {
    (
        plan.iter().map(|p| p.info.n_bytes).sum(),
        plan.iter().map(Planned::out_bytes).sum(),
    )
}

/// Whether `a` and `b` name the same existing file (also through links or other paths).
fn same_file(a: &Path, b: &Path) -> bool {
    let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        ma.dev() == mb.dev() && ma.ino() == mb.ino()
    }
    #[cfg(not(unix))]
    {
        let _ = (ma, mb);
        matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
    }
}

/// The input's metadata as llama-quantize writes it: split keys dropped,
/// `general.quantization_version` and then `general.file_type` moved to the end with their
/// new values.
fn output_metadata(file: &GgufFile, mix: Mix) -> Vec<(String, Value)> {
    const DROPPED: [&str; 5] = [
        "general.quantization_version",
        "general.file_type",
        "split.no",
        "split.count",
        "split.tensors.count",
    ];
    let mut md: Vec<(String, Value)> = file
        .metadata()
        .iter()
        .filter(|(k, _)| !DROPPED.contains(k))
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    md.push((
        "general.quantization_version".into(),
        Value::U32(QUANTIZATION_VERSION),
    ));
    md.push(("general.file_type".into(), Value::U32(mix.file_type())));
    md
}

/// Write OUT (via a temporary file renamed into place); returns a one-line summary.
fn write_output(
    file: &GgufFile,
    plan: &[Planned<'_>],
    mix: Mix,
    input: &Path,
    output: &Path,
) -> Result<String> {
    if output.is_dir() {
        bail!("{} is a directory", output.display());
    }
    if same_file(input, output) {
        bail!(
            "{} is the input file {}: choose another output path",
            output.display(),
            input.display()
        );
    }
    let dir = match output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let out_name = output
        .file_name()
        .with_context(|| format!("{}: not a file name", output.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", out_name.to_string_lossy()))
        .suffix(".part")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;

    let mut requantized: Vec<&str> = plan
        .iter()
        .filter(|p| p.converts() && p.info.dtype.is_quantized())
        .map(|p| p.info.dtype.name())
        .collect();
    if !requantized.is_empty() {
        let n = requantized.len();
        requantized.sort_unstable();
        requantized.dedup();
        let verb = if mix.base().is_quantized() {
            "requantizing"
        } else {
            "dequantizing"
        };
        eprintln!(
            "note: {verb} {n} tensors from {}: lossy, the result is only as good as the input",
            requantized.join(", ")
        );
    }

    let start = Instant::now();
    let entries: Vec<TensorEntry> = plan
        .iter()
        .map(|p| TensorEntry {
            name: p.info.name.clone(),
            dtype: p.choice.dtype,
            shape: p.desc.shape.clone(),
        })
        .collect();
    let metadata = output_metadata(file, mix);
    let sink = BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
    let mut writer = GgufStreamWriter::new(
        sink,
        metadata.iter().map(|(k, v)| (k.as_str(), v)),
        &entries,
    )?;

    let total: u64 = plan.iter().map(|p| p.info.n_elements() as u64).sum();
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] [{bar:30}] {percent:>3}% {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let mut buffer = Vec::new();
    for p in plan {
        bar.set_message(p.info.name.clone());
        let src = file.view(p.info)?;
        if p.converts() {
            buffer.resize(p.out_bytes(), 0);
            convert(&p.info.name, &src, p.choice.dtype, &mut buffer, &bar)?;
            writer.write_tensor(&buffer)?;
        } else {
            writer.write_tensor(src.data())?;
            bar.inc(p.info.n_elements() as u64);
        }
    }
    drop(buffer);
    writer.finish()?.into_inner().map_err(|e| e.into_error())?;
    bar.finish_and_clear();
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    tmp.persist(output)
        .map_err(|e| e.error)
        .with_context(|| format!("renaming the finished file to {}", output.display()))?;

    let (before, after) = totals(plan);
    let converted = plan.iter().filter(|p| p.converts()).count();
    let fell_back = plan
        .iter()
        .filter(|p| p.choice.fell_back_from.is_some())
        .count();
    Ok(format!(
        "{} ({:.2} MiB) -> {} as {}: {:.2} MiB, {} tensors ({converted} converted, {} copied{}) in {:.1} s",
        input.display(),
        mib(before),
        output.display(),
        mix.name(),
        mib(after),
        plan.len(),
        plan.len() - converted,
        if fell_back > 0 {
            format!(", {fell_back} fell back to fit their rows: see --dry-run")
        } else {
            String::new()
        },
        start.elapsed().as_secs_f64()
    ))
}

/// Convert a whole tensor to `to`, rows in parallel: each work item dequantizes its rows to
/// f32 and quantizes them. Rows are independent in every format, so the split does not change
/// a byte. Non-finite values are an error naming the tensor.
fn convert(
    name: &str,
    src: &edgeinfer_tensor::Tensor<'_>,
    to: DType,
    dst: &mut [u8],
    bar: &ProgressBar,
) -> Result<()> {
    let from = src.dtype();
    let row = src.shape()[0];
    let rows_per_chunk = (CHUNK_ELEMENTS / row).max(1);
    let src_chunk = from.bytes_for(row * rows_per_chunk).context("row size")?;
    let dst_chunk = to.bytes_for(row * rows_per_chunk).context("row size")?;
    src.data()
        .par_chunks(src_chunk)
        .zip(dst.par_chunks_mut(dst_chunk))
        .enumerate()
        .try_for_each_init(Vec::new, |values: &mut Vec<f32>, (i, (s, d))| {
            let n = s.len() / from.type_size() * from.block_size();
            values.resize(n, 0.0);
            edgeinfer_kernels::dequantize(from, s, values)?;
            if let Some(j) = values.iter().position(|v| !v.is_finite()) {
                bail!(
                    "tensor {name:?}: element {} is {} (llama-quantize rejects it too)",
                    i * row * rows_per_chunk + j,
                    values[j]
                );
            }
            edgeinfer_kernels::quantize(to, values, d)?;
            bar.inc(n as u64);
            Ok(())
        })
}
