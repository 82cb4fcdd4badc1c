//! `kind = "static"`: the map file's keys of `[directory]`, and how the map
//! is loaded (once per process, shared read-only by every worker).

use super::StaticMap;
use crate::directory::kind::{
    ClientTls, Invalid, KindSettings, KindSpec, Prepared, Problem, Setup,
};
use crate::directory::name_form::KeyFormat;
use crate::directory::Directory;
use serde::Deserialize;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The registration of `kind = "static"`.
pub const KIND: KindSpec = KindSpec {
    name: "static",
    cached_by_default: false,
    configure,
};

/// The static map's keys of `[directory]`.
#[derive(Debug, Deserialize)]
struct StaticConfig {
    /// Map file, relative to the config file's folder.
    map: Option<toml::Spanned<PathBuf>>,
    /// Whether `Alice@x` and `alice@x` are different users (domains never are).
    #[serde(default)]
    local_part_case_sensitive: bool,
}

fn configure(setup: &mut Setup<'_>) -> Result<Arc<dyn KindSettings>, Problem> {
    let d: StaticConfig = setup.read()?;
    let Some(map) = &d.map else {
        return Err(Invalid::new(
            "directory.map",
            None,
            "kind = \"static\" needs `map = \"FILE\"`",
        )
        .into());
    };
    setup.locate("directory.map", Some(map.span()));
    Ok(Arc::new(StaticKind {
        map: setup.base_dir().join(map.get_ref()),
        local_part_case_sensitive: d.local_part_case_sensitive,
    }))
}

/// A validated static map configuration.
#[derive(Debug)]
pub struct StaticKind {
    /// The file (absolute, or relative to the working directory).
    pub map: PathBuf,
    /// Whether `Alice@x` and `alice@x` are different users.
    pub local_part_case_sensitive: bool,
}

impl KindSettings for StaticKind {
    fn kind(&self) -> &'static str {
        KIND.name
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    /// The map is matched by the name as typed (its own case rule aside).
    fn name_form(&self) -> KeyFormat {
        KeyFormat::default()
    }

    fn prepare(&self, _tls: &ClientTls<'_>) -> Result<Arc<dyn Prepared>, Invalid> {
        let text = std::fs::read_to_string(&self.map).map_err(|e| {
            Invalid::new(
                "directory.map",
                None,
                format!("cannot read {}: {e}", self.map.display()),
            )
        })?;
        let map = StaticMap::parse(&text, &self.map, self.local_part_case_sensitive)
            .map_err(|e| Invalid::new("directory.map", None, e.to_string()))?;
        Ok(Arc::new(Arc::new(map)))
    }
}

impl Prepared for Arc<StaticMap> {
    fn worker(&self, _health: Arc<AtomicBool>) -> Rc<dyn Directory> {
        Rc::new(self.clone())
    }

    fn ports(&self) -> Vec<u16> {
        StaticMap::ports(self).collect()
    }

    fn summary(&self) -> String {
        format!("{} static map entries", self.len())
    }
}
