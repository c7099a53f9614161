//! `latch build`: each component's `[component.<id>.build]` command, in
//! manifest order, as `spin build` runs them.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};
use latch_runner::manifest::Manifest;

#[derive(clap::Args)]
pub struct BuildArgs {
    /// The application manifest.
    #[arg(short = 'f', long = "from", default_value = "spin.toml")]
    pub manifest: PathBuf,
    /// Build only these components (by id); all by default.
    #[arg(short = 'c', long = "component-id")]
    pub components: Vec<String>,
}

pub fn run(args: &BuildArgs) -> anyhow::Result<()> {
    let manifest = Manifest::load(&args.manifest)?;
    for id in &args.components {
        if !manifest.components.contains_key(id) {
            bail!("no component `{id}` in {}", args.manifest.display());
        }
    }
    let selected: Vec<_> = manifest
        .components
        .values()
        .filter(|c| args.components.is_empty() || args.components.contains(&c.id))
        .filter(|c| c.build.is_some())
        .collect();
    let total = selected.len();
    for (index, component) in selected.iter().enumerate() {
        let Some(build) = &component.build else {
            continue;
        };
        let workdir = match &build.workdir {
            Some(dir) => manifest.base_dir.join(dir),
            None => manifest.base_dir.clone(),
        };
        eprintln!(
            "[{}/{total}] building component `{}`: {}",
            index + 1,
            component.id,
            build.command
        );
        let status = Command::new("sh")
            .arg("-c")
            .arg(&build.command)
            .current_dir(&workdir)
            .status()
            .with_context(|| format!("running the build command of `{}`", component.id))?;
        if !status.success() {
            bail!(
                "build command of component `{}` failed ({status})",
                component.id
            );
        }
    }
    eprintln!("built {total} component(s)");
    Ok(())
}
