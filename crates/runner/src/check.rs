//! Checks a built component against what the runner provides (its linker)
//! and against the `wit/` world the application's components target.

use std::path::Path;

use anyhow::Context;
use wasmtime::component::Linker;
use wasmtime::component::types::ComponentItem;

use crate::engine::Runtime;
use crate::host::InstanceState;

/// A `namespace:package/interface@version` name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceName {
    pub package: String,
    pub interface: String,
    pub version: Option<semver::Version>,
}

impl InterfaceName {
    /// Parses `ns:pkg/iface[@version]`; plain names (functions) give `None`.
    pub fn parse(name: &str) -> Option<InterfaceName> {
        let (path, version) = match name.split_once('@') {
            Some((path, version)) => (path, Some(semver::Version::parse(version).ok()?)),
            None => (name, None),
        };
        let (package, interface) = path.split_once('/')?;
        package.contains(':').then(|| InterfaceName {
            package: package.to_string(),
            interface: interface.to_string(),
            version,
        })
    }

    /// Same interface, semver-compatible versions (0.2.x with 0.2.y; 3.x with 3.y).
    pub fn compatible_with(&self, other: &InterfaceName) -> bool {
        if self.package != other.package || self.interface != other.interface {
            return false;
        }
        match (&self.version, &other.version) {
            (None, None) => true,
            (Some(a), Some(b)) => {
                a.major == b.major && (a.major != 0 || a.minor == b.minor) && a.pre == b.pre
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for InterfaceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.package, self.interface)?;
        if let Some(version) = &self.version {
            write!(f, "@{version}")?;
        }
        Ok(())
    }
}

/// What the `wit/` world allows a component to import and requires it to export.
#[derive(Debug, Clone)]
pub struct WorldContract {
    pub name: String,
    pub imports: Vec<InterfaceName>,
    pub exports: Vec<InterfaceName>,
}

impl WorldContract {
    /// Reads the single world of the WIT package in `dir` (its `*.wit` files,
    /// not `deps/`). Imports and exports name interfaces of other packages.
    pub fn load(dir: &Path) -> anyhow::Result<WorldContract> {
        let group = wit_parser::UnresolvedPackageGroup::parse_dir(dir)
            .with_context(|| format!("parsing the WIT package in {}", dir.display()))?;
        let package = &group.main;
        let mut names = std::collections::HashMap::new();
        for (dep, items) in &package.foreign_deps {
            for (interface, (item, _)) in items {
                if let wit_parser::AstItem::Interface(id) = item {
                    names.insert(
                        *id,
                        InterfaceName {
                            package: format!("{}:{}", dep.namespace, dep.name),
                            interface: interface.clone(),
                            version: dep.version.clone(),
                        },
                    );
                }
            }
        }
        let mut worlds = package.worlds.iter();
        let (_, world) = worlds
            .next()
            .with_context(|| format!("{} defines no world", dir.display()))?;
        anyhow::ensure!(
            worlds.next().is_none(),
            "{} defines more than one world",
            dir.display()
        );
        let resolve =
            |items: &wit_parser::IndexMap<wit_parser::WorldKey, wit_parser::WorldItem>| {
                items
                    .keys()
                    .map(|key| match key {
                        wit_parser::WorldKey::Interface(id) => names
                            .get(id)
                            .cloned()
                            .context("the world may only name interfaces of other packages"),
                        wit_parser::WorldKey::Name(name) => {
                            anyhow::bail!("the world may only name interfaces, not `{name}`")
                        }
                    })
                    .collect::<anyhow::Result<Vec<_>>>()
            };
        Ok(WorldContract {
            name: format!("{}/{}", package.name, world.name),
            imports: resolve(&world.imports)?,
            exports: resolve(&world.exports)?,
        })
    }
}

/// The outcome of checking one component.
#[derive(Debug, Clone, Default)]
pub struct ComponentReport {
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    /// Every mismatch found; empty means the component is fine.
    pub problems: Vec<String>,
}

/// Checks a component's imports and exports against `world`, and links it
/// against the runner's `linker`.
pub fn check_component(
    runtime: &Runtime,
    linker: &Linker<InstanceState>,
    world: &WorldContract,
    bytes: &[u8],
) -> ComponentReport {
    let mut report = ComponentReport::default();
    let component = match runtime.cache.load(&runtime.engine, bytes) {
        Ok((component, _, _)) => component,
        Err(e) => {
            report.problems.push(format!("does not compile: {e:#}"));
            return report;
        }
    };
    let ty = component.component_type();
    for (name, item) in ty.imports(&runtime.engine) {
        report.imports.push(name.to_string());
        let allowed = matches!(item.ty, ComponentItem::ComponentInstance(_))
            && InterfaceName::parse(name)
                .is_some_and(|n| world.imports.iter().any(|w| w.compatible_with(&n)));
        if !allowed {
            report.problems.push(format!(
                "imports `{name}`, which the {} world does not allow",
                world.name
            ));
        }
    }
    for (name, _) in ty.exports(&runtime.engine) {
        report.exports.push(name.to_string());
    }
    for required in &world.exports {
        let exported = report
            .exports
            .iter()
            .filter_map(|e| InterfaceName::parse(e))
            .any(|e| e.compatible_with(required));
        if !exported {
            report.problems.push(format!(
                "does not export `{required}`, which the world requires"
            ));
        }
    }
    if let Err(e) = crate::app::link_component(runtime, linker, bytes) {
        report
            .problems
            .push(format!("does not link against the runner: {e:#}"));
    }
    report
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_compared_as_semver() {
        let a = InterfaceName::parse("wasi:io/poll@0.2.0").unwrap();
        assert!(a.compatible_with(&InterfaceName::parse("wasi:io/poll@0.2.6").unwrap()));
        assert!(!a.compatible_with(&InterfaceName::parse("wasi:io/poll@0.3.0").unwrap()));
        assert!(!a.compatible_with(&InterfaceName::parse("wasi:io/streams@0.2.0").unwrap()));
        let s = InterfaceName::parse("spin:sqlite/sqlite@3.0.0").unwrap();
        assert!(s.compatible_with(&InterfaceName::parse("spin:sqlite/sqlite@3.1.0").unwrap()));
        assert!(!s.compatible_with(&InterfaceName::parse("spin:sqlite/sqlite@2.0.0").unwrap()));
        assert_eq!(InterfaceName::parse("run"), None);
    }

    #[test]
    fn the_project_world_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wit");
        let world = WorldContract::load(&dir).unwrap();
        assert_eq!(world.name, "latch:route@0.1.0/route");
        assert!(
            world
                .imports
                .iter()
                .any(|i| i.to_string() == "spin:sqlite/sqlite@3.0.0")
        );
        assert_eq!(world.exports.len(), 1);
        assert_eq!(
            world.exports[0].to_string(),
            "wasi:http/incoming-handler@0.2.0"
        );
    }
}
