//! A chart's dependencies that git does not carry: what `helm dependency build` would download.
//! Read from `Chart.yaml` (`dependencies`) and `Chart.lock` (the exact versions, when present);
//! a dependency counts as present when `charts/` holds its directory or an archive of it.
//! Only repositories Headway can fetch by URL are listed (`https://`, `http://`, `oci://`); a
//! `file://` dependency, or a repository named by a `helm repo add` alias (`@name`, `alias:name`),
//! is left to `helm template`, whose error names what is missing.

use std::path::Path;

use serde::Deserialize;

use super::{ChartError, ChartRef};

#[derive(Debug, Default, Deserialize)]
struct ChartFile {
    #[serde(default)]
    dependencies: Vec<Dependency>,
}

#[derive(Debug, Deserialize)]
struct Dependency {
    name: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    repository: String,
}

fn read(path: &Path) -> Result<Option<ChartFile>, ChartError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ChartError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    serde_saphyr::from_str(&text)
        .map(Some)
        .map_err(|e| ChartError::InvalidReference(format!("{}: {e}", path.display())))
}

/// Whether `charts/` holds the dependency `name`: a directory of that name, or an archive named
/// `<name>-<version>.tgz` as `helm dependency build` and `helm package` write them.
fn present(charts: &Path, name: &str) -> bool {
    if charts.join(name).join("Chart.yaml").is_file() {
        return true;
    }
    let Ok(entries) = std::fs::read_dir(charts) else {
        return false;
    };
    entries.flatten().any(|e| {
        let file = e.file_name();
        let file = file.to_string_lossy();
        file.strip_suffix(".tgz")
            .and_then(|stem| stem.strip_prefix(name))
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|version| {
                version
                    .trim_start_matches('v')
                    .starts_with(|c: char| c.is_ascii_digit())
            })
    })
}

/// The dependencies of the chart in `chart_dir` that `charts/` lacks and Headway can download,
/// each at the version `Chart.lock` pins (else the range `Chart.yaml` gives).
pub fn missing_dependencies(chart_dir: &Path) -> Result<Vec<ChartRef>, ChartError> {
    let Some(chart) = read(&chart_dir.join("Chart.yaml"))? else {
        return Ok(Vec::new());
    };
    let lock = read(&chart_dir.join("Chart.lock"))?.unwrap_or_default();
    let charts = chart_dir.join("charts");
    let mut missing = Vec::new();
    for dep in chart.dependencies {
        let repository = dep.repository.trim().trim_end_matches('/').to_string();
        let fetchable = ["https://", "http://", "oci://"]
            .iter()
            .any(|scheme| repository.starts_with(scheme));
        if !fetchable || present(&charts, &dep.name) {
            continue;
        }
        let locked = lock.dependencies.iter().find(|l| {
            l.name == dep.name && l.repository.trim().trim_end_matches('/') == repository
        });
        let version = locked.map_or(dep.version, |l| l.version.clone());
        let chart = ChartRef {
            repository,
            name: dep.name,
            version,
        };
        if !missing.contains(&chart) {
            missing.push(chart);
        }
    }
    Ok(missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(dir: &Path, chart_yaml: &str, lock: Option<&str>, present: &[&str]) {
        std::fs::write(dir.join("Chart.yaml"), chart_yaml).unwrap();
        if let Some(lock) = lock {
            std::fs::write(dir.join("Chart.lock"), lock).unwrap();
        }
        std::fs::create_dir_all(dir.join("charts")).unwrap();
        for file in present {
            std::fs::write(dir.join("charts").join(file), "").unwrap();
        }
    }

    #[test]
    fn lists_what_charts_lacks_at_the_locked_version() {
        let dir = tempfile::tempdir().unwrap();
        chart(
            dir.path(),
            "apiVersion: v2\nname: app\nversion: 1.0.0\ndependencies:\n\
             - {name: redis, version: '~17.0', repository: 'https://charts.example.com/'}\n\
             - {name: db, version: '>=1.0.0', repository: 'oci://registry.example.com/charts'}\n\
             - {name: vendored, version: 2.0.0, repository: 'https://charts.example.com'}\n\
             - {name: local, version: 0.1.0, repository: 'file://../local'}\n\
             - {name: named, version: 0.1.0, repository: '@stable'}\n\
             - {name: crds, version: 0.1.0}\n",
            Some(
                "dependencies:\n- {name: redis, version: 17.0.9, repository: 'https://charts.example.com/'}\n",
            ),
            &["vendored-2.0.0.tgz"],
        );
        let missing = missing_dependencies(dir.path()).unwrap();
        assert_eq!(
            missing,
            [
                ChartRef {
                    repository: "https://charts.example.com".into(),
                    name: "redis".into(),
                    version: "17.0.9".into(),
                },
                ChartRef {
                    repository: "oci://registry.example.com/charts".into(),
                    name: "db".into(),
                    version: ">=1.0.0".into(),
                },
            ]
        );
    }

    #[test]
    fn a_vendored_directory_or_no_chart_yaml_needs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(missing_dependencies(dir.path()).unwrap().is_empty());
        chart(
            dir.path(),
            "apiVersion: v2\nname: app\nversion: 1.0.0\ndependencies:\n\
             - {name: redis, version: 17.0.9, repository: 'https://charts.example.com'}\n",
            None,
            &[],
        );
        std::fs::create_dir_all(dir.path().join("charts/redis")).unwrap();
        std::fs::write(dir.path().join("charts/redis/Chart.yaml"), "name: redis").unwrap();
        assert!(missing_dependencies(dir.path()).unwrap().is_empty());
        // `redis-cluster-1.0.0.tgz` is not `redis`.
        std::fs::remove_dir_all(dir.path().join("charts/redis")).unwrap();
        std::fs::write(dir.path().join("charts/redis-cluster-1.0.0.tgz"), "").unwrap();
        assert_eq!(missing_dependencies(dir.path()).unwrap().len(), 1);
    }

    #[test]
    fn an_unreadable_chart_yaml_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Chart.yaml"), "dependencies: [unclosed").unwrap();
        let err = missing_dependencies(dir.path()).unwrap_err().to_string();
        assert!(err.contains("Chart.yaml"), "{err}");
    }
}
