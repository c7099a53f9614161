//! `fermyon:spin/variables@2.0.0`: a component reads the variables its
//! manifest entry declares, rendered from application variables at start-up.

use std::collections::HashMap;
use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

use super::InstanceState;
use crate::manifest::{ComponentDecl, is_variable_name};
use crate::variables::AppVariables;

mod bindings {
    wasmtime::component::bindgen!({
        inline: "package latch:host; world variables-host { import fermyon:spin/variables@2.0.0; }",
        path: "../../wit/deps/spin-variables",
        imports: { default: trappable },
    });
}

use bindings::fermyon::spin::variables::{self as wit, Error};

pub fn link(linker: &mut Linker<InstanceState>) -> anyhow::Result<()> {
    wit::add_to_linker::<InstanceState, HasSelf<VariablesState>>(linker, |s| &mut s.variables)?;
    Ok(())
}

/// A component's variables, rendered once.
pub struct VariablesConfig {
    values: Arc<HashMap<String, String>>,
}

impl VariablesConfig {
    pub fn configure(
        variables: &AppVariables,
        decl: &ComponentDecl,
    ) -> anyhow::Result<VariablesConfig> {
        Ok(VariablesConfig {
            values: Arc::new(variables.render_all(&decl.variables)?),
        })
    }

    pub fn instance_state(&self) -> VariablesState {
        VariablesState {
            values: self.values.clone(),
        }
    }
}

pub struct VariablesState {
    values: Arc<HashMap<String, String>>,
}

impl wit::Host for VariablesState {
    fn get(&mut self, name: String) -> wasmtime::Result<Result<String, Error>> {
        if !is_variable_name(&name) {
            return Ok(Err(Error::InvalidName(name)));
        }
        Ok(self
            .values
            .get(&name)
            .cloned()
            .ok_or(Error::Undefined(format!("no variable for `{name}`"))))
    }
}
