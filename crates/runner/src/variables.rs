//! Application variables: where their values come from and how templates use them.
//!
//! As in Spin, a value comes from the `SPIN_VARIABLE_<NAME>` environment
//! variable, else from the same key in the application's `.env` file, else
//! from the manifest `default`. A `required` variable with no value stops
//! start-up. Component variables and `allowed_outbound_hosts` are templates
//! over application variables, rendered once at start-up.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::manifest::Manifest;

/// Why variables cannot be resolved.
#[derive(Debug, thiserror::Error)]
pub enum VariablesError {
    #[error("no provider resolved required variable(s): {0}")]
    MissingRequired(String),
    #[error("cannot read {path}: {message}")]
    DotEnv { path: String, message: String },
    #[error("invalid template `{template}`: {source}")]
    Template {
        template: String,
        source: TemplateError,
    },
}

/// Why a template cannot be parsed or rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unclosed `{{{{`")]
    Unclosed,
    #[error("unopened `}}}}`")]
    Unopened,
    #[error("`{0}` is not a variable name")]
    NotAName(String),
    #[error("variable `{0}` has no value")]
    NoValue(String),
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    Literal(String),
    Variable(String),
}

/// A parsed `{{ name }}` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(Vec<TemplatePart>);

impl Template {
    /// Parses literal text with `{{ name }}` references.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(TemplatePart::Literal(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after.find("}}").ok_or(TemplateError::Unclosed)?;
            let name = after[..end].trim();
            if !crate::manifest::is_variable_name(name) {
                return Err(TemplateError::NotAName(name.to_string()));
            }
            parts.push(TemplatePart::Variable(name.to_string()));
            rest = &after[end + 2..];
        }
        if rest.contains("}}") {
            return Err(TemplateError::Unopened);
        }
        if !rest.is_empty() {
            parts.push(TemplatePart::Literal(rest.to_string()));
        }
        Ok(Template(parts))
    }

    pub fn parts(&self) -> &[TemplatePart] {
        &self.0
    }

    /// Substitutes resolved application variables.
    pub fn render(&self, values: &HashMap<String, String>) -> Result<String, TemplateError> {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                TemplatePart::Literal(text) => out.push_str(text),
                TemplatePart::Variable(name) => out.push_str(
                    values
                        .get(name)
                        .ok_or_else(|| TemplateError::NoValue(name.clone()))?,
                ),
            }
        }
        Ok(out)
    }
}

/// Resolved application variable values.
#[derive(Clone, Default)]
pub struct AppVariables {
    values: HashMap<String, String>,
}

// Values may be secrets: never print them.
impl std::fmt::Debug for AppVariables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppVariables")
            .field("names", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The environment variable Spin reads for an application variable.
pub fn env_key(name: &str) -> String {
    format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase())
}

impl AppVariables {
    /// Resolves every application variable from the process environment, the
    /// `.env` file beside the manifest, then defaults.
    pub fn resolve(manifest: &Manifest) -> Result<AppVariables, VariablesError> {
        let dotenv = read_dotenv(&manifest.base_dir.join(".env"))?;
        Self::resolve_with(manifest, |key| {
            std::env::var(key).ok().or_else(|| dotenv.get(key).cloned())
        })
    }

    /// Resolves with a custom lookup of `SPIN_VARIABLE_*` keys (tests).
    pub fn resolve_with(
        manifest: &Manifest,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<AppVariables, VariablesError> {
        let mut values = HashMap::new();
        let mut missing = Vec::new();
        for (name, decl) in &manifest.variables {
            match lookup(&env_key(name)).or_else(|| decl.default.clone()) {
                Some(value) => {
                    values.insert(name.clone(), value);
                }
                None => missing.push(name.clone()),
            }
        }
        if missing.is_empty() {
            Ok(AppVariables { values })
        } else {
            Err(VariablesError::MissingRequired(missing.join(", ")))
        }
    }

    /// Renders a template against these values.
    pub fn render(&self, template: &str) -> Result<String, VariablesError> {
        Template::parse(template)
            .and_then(|t| t.render(&self.values))
            .map_err(|source| VariablesError::Template {
                template: template.to_string(),
                source,
            })
    }

    /// Renders a component's `variables` table.
    pub fn render_all(
        &self,
        templates: &BTreeMap<String, String>,
    ) -> Result<HashMap<String, String>, VariablesError> {
        templates
            .iter()
            .map(|(name, template)| Ok((name.clone(), self.render(template)?)))
            .collect()
    }
}

/// Reads `KEY=value` lines; a missing file is an empty set.
fn read_dotenv(path: &Path) -> Result<HashMap<String, String>, VariablesError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => {
            return Err(VariablesError::DotEnv {
                path: path.display().to_string(),
                message: e.to_string(),
            });
        }
    };
    let mut values = HashMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(VariablesError::DotEnv {
                path: path.display().to_string(),
                message: format!("line {} is not KEY=value", number + 1),
            });
        };
        values.insert(key.trim().to_string(), unquote(value.trim()).to_string());
    }
    Ok(values)
}

fn unquote(value: &str) -> &str {
    for quote in ['"', '\''] {
        if let Some(inner) = value
            .strip_prefix(quote)
            .and_then(|v| v.strip_suffix(quote))
        {
            return inner;
        }
    }
    value
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest::parse(
            Path::new("/app/spin.toml"),
            r#"
spin_manifest_version = 2
[application]
name = "demo"
[variables]
greeting = { default = "hi" }
token = { required = true, secret = true }
[[trigger.http]]
route = "/"
component = "c"
[component.c]
source = "c.wasm"
"#,
        )
        .unwrap()
    }

    #[test]
    fn template_parses_and_renders() {
        let t = Template::parse("https://{{ host }}:{{port}}/x").unwrap();
        let values = HashMap::from([
            ("host".to_string(), "db.example".to_string()),
            ("port".to_string(), "8443".to_string()),
        ]);
        assert_eq!(t.render(&values).unwrap(), "https://db.example:8443/x");
        assert!(Template::parse("{{ Upper }}").is_err());
        assert!(Template::parse("{{ open").is_err());
        assert!(Template::parse("close }}").is_err());
    }

    #[test]
    fn environment_overrides_default_and_required_must_be_set() {
        let m = manifest();
        let err = AppVariables::resolve_with(&m, |_| None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no provider resolved required variable(s): token"
        );
        let vars = AppVariables::resolve_with(&m, |k| match k {
            "SPIN_VARIABLE_TOKEN" => Some("s3cret".into()),
            "SPIN_VARIABLE_GREETING" => Some("hello".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(vars.render("{{ greeting }}!").unwrap(), "hello!");
        assert!(!format!("{vars:?}").contains("s3cret"));
    }

    #[test]
    fn dotenv_lines_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(
            &path,
            "# comment\nSPIN_VARIABLE_A=1\nexport SPIN_VARIABLE_B=\"two words\"\n",
        )
        .unwrap();
        let values = read_dotenv(&path).unwrap();
        assert_eq!(values["SPIN_VARIABLE_A"], "1");
        assert_eq!(values["SPIN_VARIABLE_B"], "two words");
        std::fs::write(&path, "garbage\n").unwrap();
        assert!(read_dotenv(&path).is_err());
    }

    /// Property tests of the manifest's variables: names, defaults and the
    /// templates that use them come from a file a user edits. Whatever it
    /// holds, parsing gives a value or a typed error, never a panic.
    mod untrusted_input {
        use super::*;
        use proptest::prelude::*;

        /// TOML basic-string escaping, so any text can be put in a manifest.
        fn toml_string(text: &str) -> String {
            let mut out = String::from("\"");
            for c in text.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        }

        fn template_text() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<String>(),
                "[a-z{} _:/.-]{0,40}",
                "(lit|\\{\\{ ?[a-z][a-z0-9_]{0,8} ?\\}\\}|\\{\\{|\\}\\}|https://){0,6}",
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn templates_parse_or_are_refused(text in template_text()) {
                match Template::parse(&text) {
                    Ok(template) => {
                        // Every variable it names renders once it has a value.
                        let values: HashMap<String, String> = template
                            .parts()
                            .iter()
                            .filter_map(|part| match part {
                                TemplatePart::Variable(name) => Some((name.clone(), "v".to_string())),
                                TemplatePart::Literal(_) => None,
                            })
                            .collect();
                        prop_assert!(template.render(&values).is_ok());
                        if !text.contains("{{") {
                            prop_assert_eq!(template.render(&HashMap::new()), Ok(text.clone()));
                        }
                    }
                    Err(TemplateError::NotAName(name)) => prop_assert!(!crate::manifest::is_variable_name(&name)),
                    Err(error) => prop_assert!(matches!(error, TemplateError::Unclosed | TemplateError::Unopened)),
                }
            }

            #[test]
            fn literal_and_variable_parts_round_trip(
                parts in prop::collection::vec(
                    prop_oneof!["[a-z0-9:/. -]{1,10}".prop_map(TemplatePart::Literal), "[a-z][a-z0-9_]{0,8}".prop_map(TemplatePart::Variable)],
                    0..8,
                ),
            ) {
                let text: String = parts
                    .iter()
                    .map(|part| match part {
                        TemplatePart::Literal(text) => text.clone(),
                        TemplatePart::Variable(name) => format!("{{{{ {name} }}}}"),
                    })
                    .collect();
                let values: HashMap<String, String> = parts
                    .iter()
                    .filter_map(|part| match part {
                        TemplatePart::Variable(name) => Some((name.clone(), format!("<{name}>"))),
                        TemplatePart::Literal(_) => None,
                    })
                    .collect();
                let expected: String = parts
                    .iter()
                    .map(|part| match part {
                        TemplatePart::Literal(text) => text.clone(),
                        TemplatePart::Variable(name) => format!("<{name}>"),
                    })
                    .collect();
                let template = Template::parse(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(template.render(&values), Ok(expected));
            }

            #[test]
            fn manifests_with_any_variables_parse_or_are_refused(
                variables in prop::collection::btree_map(
                    prop_oneof!["[a-z][a-z0-9_]{0,8}", "[A-Za-z0-9_ .-]{1,10}"],
                    (prop::option::of(any::<String>()), any::<bool>(), any::<bool>()),
                    0..5,
                ),
                component_variables in prop::collection::btree_map("[a-z][a-z0-9_]{0,8}|[A-Z]{1,4}", template_text(), 0..4),
                outbound in prop::collection::vec(template_text(), 0..3),
            ) {
                let mut text = String::from(
                    "spin_manifest_version = 2\n[application]\nname = \"demo\"\n[variables]\n",
                );
                for (name, (default, required, secret)) in &variables {
                    let mut fields = Vec::new();
                    if let Some(default) = default {
                        fields.push(format!("default = {}", toml_string(default)));
                    }
                    if *required {
                        fields.push("required = true".to_string());
                    }
                    if *secret {
                        fields.push("secret = true".to_string());
                    }
                    text.push_str(&format!("{} = {{ {} }}\n", toml_string(name), fields.join(", ")));
                }
                text.push_str("[[trigger.http]]\nroute = \"/\"\ncomponent = \"c\"\n[component.c]\nsource = \"c.wasm\"\n");
                let hosts: Vec<String> = outbound.iter().map(|h| toml_string(h)).collect();
                text.push_str(&format!("allowed_outbound_hosts = [{}]\n", hosts.join(", ")));
                text.push_str("[component.c.variables]\n");
                for (name, template) in &component_variables {
                    text.push_str(&format!("{} = {}\n", toml_string(name), toml_string(template)));
                }
                match Manifest::parse(Path::new("/app/spin.toml"), &text) {
                    Ok(manifest) => {
                        // What parses resolves, or names the variables it lacks.
                        match AppVariables::resolve_with(&manifest, |_| None) {
                            Ok(values) => {
                                for template in component_variables.values() {
                                    prop_assert!(values.render(template).is_ok(), "{template}");
                                }
                            }
                            Err(error) => prop_assert!(matches!(error, VariablesError::MissingRequired(_))),
                        }
                    }
                    Err(error) => prop_assert!(!error.to_string().is_empty()),
                }
            }
        }
    }
}
