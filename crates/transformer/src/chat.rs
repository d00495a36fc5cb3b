//! Chat templates (`tokenizer.chat_template`, Jinja) rendered with minijinja, configured as
//! Hugging Face renders them: `trim_blocks` and `lstrip_blocks` on, Python string methods
//! (`.strip()`, `.startswith()` …) through minijinja-contrib's pycompat, `raise_exception`,
//! `strftime_now`, and the variables `messages`, `add_generation_prompt`, `bos_token`,
//! `eos_token`.
//!
//! [`template_for`] picks a model's template (its own, else a built-in one for its family) and
//! [`render_for`] renders it with the tokenizer's BOS/EOS as llama.cpp does, so that
//! `tokenizer.encode(&prompt, true)` gives the model's prompt ids.

use minijinja::{context, Environment, Error, ErrorKind};
use serde::Serialize;

use crate::{Model, Tokenizer, TransformerError};

/// One chat message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    /// A message with `role` and `content`.
    pub fn new(role: &str, content: &str) -> Self {
        Message {
            role: role.to_string(),
            content: content.to_string(),
        }
    }
}

/// ChatML, used when a model has no template of its own.
pub const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Gemma's turn format, for Gemma GGUF files without `tokenizer.chat_template`: Google's
/// template for Gemma 3 (string contents): `assistant` is written `model`, a system message is
/// folded into the first user turn (followed by a blank line), contents are trimmed, and roles
/// must alternate user/model.
pub const GEMMA: &str = r#"{{ bos_token }}
{%- if messages and messages[0]['role'] == 'system' -%}
    {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {{- message['content'] | trim }}
    {{- '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{ '<start_of_turn>model\n' }}
{%- endif -%}
"#;

/// Architectures of the Gemma family (`general.architecture`).
const GEMMA_ARCHITECTURES: &[&str] = &["gemma", "gemma2", "gemma3", "gemma3n"];

/// The template for a model whose file has none: Gemma's for the Gemma family (by
/// architecture, or a vocabulary with `<start_of_turn>`), else ChatML.
pub fn builtin_template(architecture: &str, tokenizer: &Tokenizer) -> &'static str {
    if GEMMA_ARCHITECTURES.contains(&architecture)
        || tokenizer.token_id("<start_of_turn>").is_some()
    {
        GEMMA
    } else {
        CHATML
    }
}

/// The chat template to use for `model`: its own (`tokenizer.chat_template`), else
/// [`builtin_template`].
pub fn template_for(model: &Model) -> &str {
    match model.chat_template.as_deref() {
        Some(t) => t,
        None => builtin_template(&model.config.arch, &model.tokenizer),
    }
}

/// Render `template` over `messages` as llama.cpp does for a model: `bos_token` and
/// `eos_token` are the tokenizer's BOS and EOS texts, and when the tokenizer adds BOS itself
/// (`add_bos`) a BOS text that the template put at the start is removed (EOS at the end
/// likewise with `add_eos`), so that `tokenizer.encode(&prompt, true)` holds exactly one.
pub fn render_for(
    template: &str,
    tokenizer: &Tokenizer,
    messages: &[Message],
    add_generation_prompt: bool,
) -> Result<String, TransformerError> {
    let text_of = |id: Option<u32>| id.map(|i| tokenizer.token_text(i)).unwrap_or_default();
    let (bos, eos) = (text_of(tokenizer.bos()), text_of(tokenizer.eos()));
    let mut out = render(template, messages, add_generation_prompt, &bos, &eos)?;
    if tokenizer.add_bos() && !bos.is_empty() && out.starts_with(&bos) {
        out.drain(..bos.len());
    }
    if tokenizer.add_eos() && !eos.is_empty() && out.ends_with(&eos) {
        out.truncate(out.len() - eos.len());
    }
    Ok(out)
}

/// Render `template` over `messages`.
pub fn render(
    template: &str,
    messages: &[Message],
    add_generation_prompt: bool,
    bos_token: &str,
    eos_token: &str,
) -> Result<String, TransformerError> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", |msg: String| -> Result<String, Error> {
        Err(Error::new(ErrorKind::InvalidOperation, msg))
    });
    env.add_function("strftime_now", |fmt: String| -> String {
        // Templates use this for "today's date"; without a clock dependency we give the
        // fixed format's shape with the Unix epoch day count converted to a civil date.
        let days = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() / 86_400)
            .unwrap_or(0) as i64;
        let (y, m, d) = civil_from_days(days);
        const MONTHS: [&str; 12] = [
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        ];
        fmt.replace("%d", &format!("{d:02}"))
            .replace("%m", &format!("{m:02}"))
            .replace("%Y", &y.to_string())
            .replace("%B", MONTHS[(m - 1) as usize])
            .replace("%b", &MONTHS[(m - 1) as usize][..3])
    });
    let err = |e: Error| TransformerError::Template {
        what: format!("{e:#}"),
    };
    env.add_template("chat", template).map_err(err)?;
    let tmpl = env.get_template("chat").map_err(err)?;
    tmpl.render(context! {
        messages => messages,
        add_generation_prompt => add_generation_prompt,
        bos_token => bos_token,
        eos_token => eos_token,
    })
    .map_err(err)
}

/// Days since 1970-01-01 → (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SmolLM2-135M-Instruct's template (from its GGUF file).
    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn smollm2_template_adds_default_system_prompt() {
        let out = render(
            SMOLLM2,
            &[Message::new("user", "Hi")],
            true,
            "<|im_start|>",
            "<|im_end|>",
        )
        .unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let out = render(
            SMOLLM2,
            &[
                Message::new("system", "Be brief."),
                Message::new("user", "Hi"),
            ],
            false,
            "",
            "",
        )
        .unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        );
    }

    #[test]
    fn llama3_style_template_with_trim_and_bos() {
        let t = "{{- bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";
        let out = render(
            t,
            &[Message::new("user", "  Hello  ")],
            true,
            "<|begin_of_text|>",
            "",
        )
        .unwrap();
        assert_eq!(out, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
    }

    #[test]
    fn python_methods_blocks_and_exceptions() {
        // Qwen2-style constructs: string methods, whitespace control from trim/lstrip_blocks.
        let t = "{%- for m in messages %}\n  {%- if m.role == 'user' and m.content.startswith('/') %}CMD:{{ m.content.strip('/') }}\n  {%- else %}{{ m.role }}:{{ m.content.upper() }}\n  {%- endif %}\n{%- endfor %}";
        let out = render(
            t,
            &[
                Message::new("user", "/run/"),
                Message::new("assistant", "ok"),
            ],
            false,
            "",
            "",
        )
        .unwrap();
        assert_eq!(out, "CMD:runassistant:OK");
        let bad = "{{ raise_exception('roles must alternate') }}";
        let e = render(bad, &[], false, "", "").unwrap_err();
        assert!(e.to_string().contains("roles must alternate"), "{e}");
        assert!(render("{% for %}", &[], false, "", "").is_err());
    }

    #[test]
    fn gemma_template_folds_the_system_prompt_and_alternates() {
        let r = |m: &[Message], gen| render(GEMMA, m, gen, "<bos>", "<eos>");
        assert_eq!(
            r(&[Message::new("user", " Hi\n")], true).unwrap(),
            "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
        );
        assert_eq!(
            r(
                &[
                    Message::new("system", "Be brief."),
                    Message::new("user", "Hi"),
                    Message::new("assistant", "Hello."),
                    Message::new("user", "Bye"),
                ],
                false
            )
            .unwrap(),
            "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n\
             <start_of_turn>model\nHello.<end_of_turn>\n\
             <start_of_turn>user\nBye<end_of_turn>\n"
        );
        assert_eq!(r(&[], true).unwrap(), "<bos><start_of_turn>model\n");
        let e = r(&[Message::new("assistant", "x")], true).unwrap_err();
        assert!(e.to_string().contains("must alternate"), "{e}");
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_786), (2026, 11, 29));
    }
}
