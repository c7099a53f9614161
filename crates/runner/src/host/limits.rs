//! Per-instance resource limits: linear memory (SpinKube's
//! `invocationLimits.memory`), and the memory actually used, for telemetry.

use wasmtime::ResourceLimiter;

/// Limits applied to every instance of every component.
#[derive(Debug, Clone, Copy)]
pub struct LimitsConfig {
    /// Largest linear memory an instance may grow to, in bytes.
    pub memory_bytes: usize,
}

impl LimitsConfig {
    pub fn instance_state(&self) -> InstanceLimits {
        InstanceLimits {
            memory_limit: self.memory_bytes,
            memory_used: 0,
            memory_used_on_init: None,
            memory_denied: false,
        }
    }
}

/// The limiter of one store, which also remembers what it saw.
#[derive(Debug)]
pub struct InstanceLimits {
    memory_limit: usize,
    /// Largest total linear memory granted so far, in bytes.
    pub memory_used: usize,
    /// `memory_used` right after instantiation (Spin's
    /// `spin.component_memory_used_on_init`), once [`Self::mark_instantiated`].
    pub memory_used_on_init: Option<usize>,
    /// Whether a growth past the limit was refused (the guest then usually traps).
    pub memory_denied: bool,
}

impl InstanceLimits {
    /// Remembers the memory instantiation took (data segments, initial heap).
    pub fn mark_instantiated(&mut self) {
        self.memory_used_on_init = Some(self.memory_used);
    }
}

/// Tables are small; this only stops a runaway guest.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl ResourceLimiter for InstanceLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let within_module_max = maximum.is_none_or(|max| desired <= max);
        let total = self.memory_used - current.min(self.memory_used) + desired;
        if desired > self.memory_limit || total > self.memory_limit || !within_module_max {
            self.memory_denied = true;
            return Ok(false);
        }
        self.memory_used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
