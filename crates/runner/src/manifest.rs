//! `spin.toml` (manifest version 2): parsed strictly.
//!
//! Every key Spin documents is known here. Keys the runner implements are
//! typed fields; keys Spin supports but the runner does not are captured so
//! that start-up can refuse them by name; anything else is rejected by serde
//! (`deny_unknown_fields`) with the key and its position.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why a manifest cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read manifest {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid manifest {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("manifest {path}: `{key}` is a Spin feature that latch does not support")]
    Unsupported { path: PathBuf, key: String },
    #[error("manifest {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// A parsed, validated manifest and the directory its relative paths start from.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub path: PathBuf,
    pub base_dir: PathBuf,
    pub application: Application,
    pub variables: BTreeMap<String, VariableDecl>,
    pub http_triggers: Vec<HttpTrigger>,
    pub components: BTreeMap<String, ComponentDecl>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    spin_manifest_version: toml::Value,
    application: RawApplication,
    #[serde(default)]
    variables: BTreeMap<String, VariableDecl>,
    #[serde(default)]
    trigger: RawTriggers,
    #[serde(default)]
    component: BTreeMap<String, RawComponent>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApplication {
    name: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    authors: Vec<String>,
    // Known to Spin, not implemented here.
    #[serde(default)]
    trigger: Option<toml::Value>,
    #[serde(default)]
    targets: Option<toml::Value>,
    #[serde(default)]
    tool: Option<toml::Value>,
}

/// `[application]`.
#[derive(Debug, Clone)]
pub struct Application {
    pub name: String,
    pub version: Option<String>,
    pub description: Option<String>,
    pub authors: Vec<String>,
}

/// One entry of `[variables]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableDecl {
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub secret: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTriggers {
    #[serde(default)]
    http: Vec<RawHttpTrigger>,
    // Known to Spin, not implemented here.
    #[serde(default)]
    redis: Option<toml::Value>,
    #[serde(default)]
    cron: Option<toml::Value>,
    #[serde(default)]
    sqs: Option<toml::Value>,
    #[serde(default)]
    mqtt: Option<toml::Value>,
    #[serde(default)]
    command: Option<toml::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttpTrigger {
    #[serde(default)]
    id: Option<String>,
    route: RawRoute,
    component: toml::Value,
    #[serde(default)]
    executor: Option<RawExecutor>,
    // Known to Spin, not implemented here.
    #[serde(default)]
    components: Option<toml::Value>,
    #[serde(default)]
    static_response: Option<toml::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawRoute {
    Path(String),
    Private(RawPrivateRoute),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrivateRoute {
    private: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExecutor {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    argv: Option<toml::Value>,
    #[serde(default)]
    entrypoint: Option<toml::Value>,
}

/// One `[[trigger.http]]`: a route pattern such as `/auth/signin` or `/p/:id/...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTrigger {
    /// The public route; `None` for `route = { private = true }`: the
    /// component is reachable only through service chaining
    /// (`http://<component>.spin.internal`).
    pub route: Option<String>,
    pub component: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    source: RawSource,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    sqlite_databases: Vec<String>,
    #[serde(default)]
    variables: BTreeMap<String, String>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    #[serde(default)]
    build: Option<BuildDecl>,
    /// Ignored by Spin by design: settings for external tools.
    #[serde(default)]
    #[allow(dead_code)]
    tool: Option<toml::Value>,
    // Known to Spin, not implemented here.
    #[serde(default)]
    files: Option<toml::Value>,
    #[serde(default)]
    exclude_files: Option<toml::Value>,
    #[serde(default)]
    key_value_stores: Option<toml::Value>,
    #[serde(default)]
    ai_models: Option<toml::Value>,
    #[serde(default)]
    allowed_http_hosts: Option<toml::Value>,
    #[serde(default)]
    dependencies: Option<toml::Value>,
    #[serde(default)]
    dependencies_inherit_configuration: Option<toml::Value>,
    #[serde(default)]
    targets: Option<toml::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawSource {
    Path(String),
    Remote(#[allow(dead_code)] toml::Value),
}

/// `[component.<id>]`.
#[derive(Debug, Clone)]
pub struct ComponentDecl {
    pub id: String,
    /// Absolute path of the component's `.wasm`.
    pub source: PathBuf,
    pub description: Option<String>,
    pub allowed_outbound_hosts: Vec<String>,
    pub sqlite_databases: Vec<String>,
    pub variables: BTreeMap<String, String>,
    pub environment: BTreeMap<String, String>,
    pub build: Option<BuildDecl>,
}

/// `[component.<id>.build]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildDecl {
    pub command: String,
    #[serde(default)]
    pub workdir: Option<String>,
    #[serde(default)]
    pub watch: Vec<String>,
}

impl Manifest {
    /// Reads and validates the manifest at `path`.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses manifest text; `path` names it in errors and anchors relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<Manifest, ManifestError> {
        let raw: RawManifest = toml::from_str(text).map_err(|e| ManifestError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        let base_dir = std::path::absolute(&base_dir).unwrap_or(base_dir);
        Converter { path }.convert(raw, base_dir)
    }

    /// The application variable names, for template checks.
    pub fn variable_names(&self) -> impl Iterator<Item = &str> {
        self.variables.keys().map(String::as_str)
    }
}

struct Converter<'a> {
    path: &'a Path,
}

impl Converter<'_> {
    fn unsupported(&self, key: impl Into<String>) -> ManifestError {
        ManifestError::Unsupported {
            path: self.path.to_path_buf(),
            key: key.into(),
        }
    }

    fn invalid(&self, message: impl Into<String>) -> ManifestError {
        ManifestError::Invalid {
            path: self.path.to_path_buf(),
            message: message.into(),
        }
    }

    fn refuse_if_set<T>(&self, value: &Option<T>, key: &str) -> Result<(), ManifestError> {
        match value {
            Some(_) => Err(self.unsupported(key)),
            None => Ok(()),
        }
    }

    fn convert(&self, raw: RawManifest, base_dir: PathBuf) -> Result<Manifest, ManifestError> {
        if raw.spin_manifest_version != toml::Value::Integer(2) {
            return Err(self.invalid(format!(
                "spin_manifest_version must be 2, found {}",
                raw.spin_manifest_version
            )));
        }
        let app = raw.application;
        self.refuse_if_set(&app.trigger, "application.trigger")?;
        self.refuse_if_set(&app.targets, "application.targets")?;
        self.refuse_if_set(&app.tool, "application.tool")?;
        if app.name.trim().is_empty() {
            return Err(self.invalid("application.name must not be empty"));
        }

        for (name, decl) in &raw.variables {
            if !is_variable_name(name) {
                return Err(self.invalid(format!(
                    "variable `{name}`: names are lower snake case (a-z, 0-9, _), starting with a letter"
                )));
            }
            if decl.required && decl.default.is_some() {
                return Err(self.invalid(format!(
                    "variable `{name}`: `required` and `default` cannot both be set"
                )));
            }
            if !decl.required && decl.default.is_none() {
                return Err(self.invalid(format!(
                    "variable `{name}`: give it a `default` or mark it `required = true`"
                )));
            }
        }

        let triggers = raw.trigger;
        self.refuse_if_set(&triggers.redis, "trigger.redis")?;
        self.refuse_if_set(&triggers.cron, "trigger.cron")?;
        self.refuse_if_set(&triggers.sqs, "trigger.sqs")?;
        self.refuse_if_set(&triggers.mqtt, "trigger.mqtt")?;
        self.refuse_if_set(&triggers.command, "trigger.command")?;

        let mut components = BTreeMap::new();
        for (id, rc) in raw.component {
            let component = self.convert_component(&id, rc, &base_dir, &raw.variables)?;
            components.insert(id, component);
        }

        let mut http_triggers = Vec::new();
        for (index, t) in triggers.http.into_iter().enumerate() {
            let at = format!("trigger.http[{index}]");
            self.refuse_if_set(&t.components, &format!("{at}.components"))?;
            self.refuse_if_set(&t.static_response, &format!("{at}.static_response"))?;
            if let Some(executor) = &t.executor {
                self.refuse_if_set(&executor.argv, &format!("{at}.executor.argv"))?;
                self.refuse_if_set(&executor.entrypoint, &format!("{at}.executor.entrypoint"))?;
                if executor.kind != "spin" {
                    return Err(
                        self.unsupported(format!("{at}.executor.type = \"{}\"", executor.kind))
                    );
                }
            }
            let _ = t.id;
            let component = match t.component {
                toml::Value::String(id) => id,
                _ => return Err(self.unsupported(format!("{at}.component (inline component)"))),
            };
            if !components.contains_key(&component) {
                return Err(self.invalid(format!(
                    "{at}: component `{component}` is not defined in [component]"
                )));
            }
            let route = match t.route {
                RawRoute::Path(route) => {
                    validate_route(&route).map_err(|m| self.invalid(format!("{at}: {m}")))?;
                    Some(route)
                }
                RawRoute::Private(RawPrivateRoute { private: true }) => None,
                RawRoute::Private(RawPrivateRoute { private: false }) => {
                    return Err(self.invalid(format!(
                        "{at}.route: a table route must be `{{ private = true }}`"
                    )));
                }
            };
            http_triggers.push(HttpTrigger { route, component });
        }

        Ok(Manifest {
            path: self.path.to_path_buf(),
            base_dir,
            application: Application {
                name: app.name,
                version: app.version,
                description: app.description,
                authors: app.authors,
            },
            variables: raw.variables,
            http_triggers,
            components,
        })
    }

    fn convert_component(
        &self,
        id: &str,
        rc: RawComponent,
        base_dir: &Path,
        variables: &BTreeMap<String, VariableDecl>,
    ) -> Result<ComponentDecl, ManifestError> {
        if !is_component_id(id) {
            return Err(self.invalid(format!(
                "component `{id}`: ids are lower kebab or snake case (a-z, 0-9, -, _)"
            )));
        }
        let at = |key: &str| format!("component.{id}.{key}");
        self.refuse_if_set(&rc.files, &at("files"))?;
        self.refuse_if_set(&rc.exclude_files, &at("exclude_files"))?;
        self.refuse_if_set(&rc.key_value_stores, &at("key_value_stores"))?;
        self.refuse_if_set(&rc.ai_models, &at("ai_models"))?;
        self.refuse_if_set(&rc.allowed_http_hosts, &at("allowed_http_hosts"))?;
        self.refuse_if_set(&rc.dependencies, &at("dependencies"))?;
        self.refuse_if_set(
            &rc.dependencies_inherit_configuration,
            &at("dependencies_inherit_configuration"),
        )?;
        self.refuse_if_set(&rc.targets, &at("targets"))?;

        let source = match rc.source {
            RawSource::Path(p) => base_dir.join(p),
            RawSource::Remote(_) => {
                return Err(
                    self.unsupported(format!("{} (a URL or registry source)", at("source")))
                );
            }
        };
        for (name, template) in &rc.variables {
            if !is_variable_name(name) {
                return Err(self.invalid(format!(
                    "{}: `{name}` is not a valid variable name",
                    at("variables")
                )));
            }
            check_template(template, variables)
                .map_err(|m| self.invalid(format!("{}.{name}: {m}", at("variables"))))?;
        }
        for host in &rc.allowed_outbound_hosts {
            check_template(host, variables)
                .map_err(|m| self.invalid(format!("{}: {m}", at("allowed_outbound_hosts"))))?;
        }
        for label in &rc.sqlite_databases {
            if !is_database_label(label) {
                return Err(self.invalid(format!(
                    "{}: `{label}` is not a valid database label",
                    at("sqlite_databases")
                )));
            }
        }
        Ok(ComponentDecl {
            id: id.to_string(),
            source,
            description: rc.description,
            allowed_outbound_hosts: rc.allowed_outbound_hosts,
            sqlite_databases: rc.sqlite_databases,
            variables: rc.variables,
            environment: rc.environment,
            build: rc.build,
        })
    }
}

/// Spin's variable names: lower snake case starting with a letter.
pub fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn is_component_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn is_database_label(label: &str) -> bool {
    !label.is_empty()
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn validate_route(route: &str) -> Result<(), String> {
    if !route.starts_with('/') {
        return Err(format!("route `{route}` must start with `/`"));
    }
    if route.starts_with("/.well-known/spin/") || route == "/.well-known/spin" {
        return Err(format!("route `{route}` is reserved by Spin"));
    }
    crate::router::RoutePattern::parse(route).map(|_| ())
}

/// A template is literal text with `{{ name }}` references to application variables.
pub fn check_template(
    template: &str,
    variables: &BTreeMap<String, VariableDecl>,
) -> Result<(), String> {
    let parsed = crate::variables::Template::parse(template)
        .map_err(|e| format!("invalid template `{template}`: {e}"))?;
    for part in parsed.parts() {
        if let crate::variables::TemplatePart::Variable(name) = part
            && !variables.contains_key(name.as_str())
        {
            return Err(format!(
                "`{template}` refers to `{name}`, which is not in [variables]"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(Path::new("/app/spin.toml"), text)
    }

    const MINIMAL: &str = r#"
spin_manifest_version = 2
[application]
name = "demo"
[variables]
greeting = { default = "hi" }
token = { required = true, secret = true }
[[trigger.http]]
route = "/hello/..."
component = "hello"
[component.hello]
source = "hello.wasm"
allowed_outbound_hosts = ["https://{{ greeting }}.example.com"]
sqlite_databases = ["default"]
[component.hello.variables]
message = "{{ greeting }}, world"
"#;

    #[test]
    fn private_routes_are_triggers_without_a_public_route() {
        let text = MINIMAL.replace(
            "[component.hello]",
            "[[trigger.http]]\nroute = { private = true }\ncomponent = \"hello\"\n[component.hello]",
        );
        let m = parse(&text).unwrap();
        let routes: Vec<Option<&str>> =
            m.http_triggers.iter().map(|t| t.route.as_deref()).collect();
        assert_eq!(routes, vec![Some("/hello/..."), None]);
        let not_private = MINIMAL.replace(
            "[component.hello]",
            "[[trigger.http]]\nroute = { private = false }\ncomponent = \"hello\"\n[component.hello]",
        );
        assert!(matches!(
            parse(&not_private),
            Err(ManifestError::Invalid { .. })
        ));
    }

    #[test]
    fn parses_a_minimal_manifest() {
        let m = parse(MINIMAL).unwrap();
        assert_eq!(m.application.name, "demo");
        assert_eq!(m.http_triggers.len(), 1);
        let c = &m.components["hello"];
        assert_eq!(c.source, PathBuf::from("/app/hello.wasm"));
        assert_eq!(c.sqlite_databases, vec!["default"]);
        assert!(m.variables["token"].required);
    }

    #[test]
    fn unknown_key_is_named() {
        let text = MINIMAL.replace("[component.hello]\n", "[component.hello]\nflavour = 1\n");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("flavour"), "{err}");
    }

    #[test]
    fn spin_key_not_supported_is_named() {
        let text = MINIMAL.replace(
            "[component.hello]\n",
            "[component.hello]\nkey_value_stores = [\"default\"]\n",
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("component.hello.key_value_stores"), "{err}");
        assert!(err.contains("does not support"), "{err}");
    }

    #[test]
    fn template_must_name_a_declared_variable() {
        let text = MINIMAL.replace("{{ greeting }}, world", "{{ nope }}");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn trigger_must_name_a_component() {
        let text = MINIMAL.replace("component = \"hello\"", "component = \"other\"");
        assert!(parse(&text).unwrap_err().to_string().contains("other"));
    }

    #[test]
    fn reserved_route_is_refused() {
        let text = MINIMAL.replace("/hello/...", "/.well-known/spin/x");
        assert!(parse(&text).unwrap_err().to_string().contains("reserved"));
    }

    #[test]
    fn manifest_version_must_be_two() {
        let text = MINIMAL.replace("spin_manifest_version = 2", "spin_manifest_version = 1");
        assert!(parse(&text).is_err());
    }
}
