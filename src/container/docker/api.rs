//! The Docker Engine API calls a move between two dockerds makes, and
//! what moves with a container ([`DockerSpec`]).

use super::error::DockerError;
use super::http::{self, Response};
use crate::container::{Container, Runtime};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// dockerd's socket when nothing else is said.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// How long an ordinary API call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What creates a Docker container again on another dockerd: its name,
/// image, runtime and the body of `POST /containers/create` (its
/// Config, HostConfig and the endpoints of its user-defined networks, as
/// the source's inspect gave them), in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerSpec {
    /// The container's name (without Docker's leading slash).
    pub name: String,
    /// The image, as the container names it.
    pub image: String,
    /// The OCI runtime's name in dockerd's configuration.
    pub runtime: String,
    /// The create request's body.
    pub create_body: String,
}

/// A running container as its dockerd describes it.
#[derive(Debug, Clone)]
pub struct Inspected {
    /// Its full ID (also runc's).
    pub id: String,
    /// Its init's PID, as this host sees it.
    pub pid: i32,
    /// What creates it again elsewhere.
    pub spec: DockerSpec,
}

/// One dockerd, through its API socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Docker {
    socket: PathBuf,
}

impl Docker {
    /// The dockerd listening on `socket`.
    pub fn new(socket: &Path) -> Self {
        Docker {
            socket: socket.to_path_buf(),
        }
    }

    /// The dockerd `host` names: `unix:///path` or a path.
    pub fn from_host(host: &str) -> Self {
        Docker::new(Path::new(host.strip_prefix("unix://").unwrap_or(host)))
    }

    /// The socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// One request, whose answer must be a success.
    fn ok(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Response, DockerError> {
        success(
            http::request(&self.socket, method, path, body, timeout)?,
            method,
            path,
        )
    }

    /// The names of the running containers.
    pub fn running_names(&self) -> Result<Vec<String>, DockerError> {
        let what = "GET /containers/json";
        let v = self
            .ok("GET", "/containers/json", None, CALL_TIMEOUT)?
            .json(what)?;
        let listed = v.as_array().ok_or_else(|| DockerError::BadAnswer {
            what: what.into(),
            why: "not a list".into(),
        })?;
        Ok(listed
            .iter()
            .filter_map(|c| c["Names"][0].as_str())
            .map(|n| n.trim_start_matches('/').to_string())
            .collect())
    }

    /// Inspects the running container `name` (a name or an ID).
    pub fn inspect_running(&self, name: &str) -> Result<Inspected, DockerError> {
        let what = format!("GET /containers/{name}/json");
        let v = self
            .ok(
                "GET",
                &format!("/containers/{name}/json"),
                None,
                CALL_TIMEOUT,
            )?
            .json(&what)?;
        let bad = |why: &str| DockerError::BadAnswer {
            what: what.clone(),
            why: why.to_string(),
        };
        let id = v["Id"].as_str().ok_or_else(|| bad("no Id"))?.to_string();
        let status = v["State"]["Status"].as_str().unwrap_or("unknown");
        let pid = v["State"]["Pid"].as_i64().unwrap_or(0) as i32;
        if status != "running" || pid <= 0 {
            return Err(DockerError::NotRunning {
                name: name.to_string(),
                status: status.to_string(),
            });
        }
        let spec = spec_of(&v).ok_or_else(|| bad("no Name, Config.Image or HostConfig"))?;
        Ok(Inspected { id, pid, spec })
    }

    /// Refuses, before anything is made, a container this dockerd cannot
    /// take: dockerd unreachable, the image missing, the name taken, the
    /// runtime unknown.
    pub fn check_target(&self, spec: &DockerSpec) -> Result<(), DockerError> {
        let info = self
            .ok("GET", "/info", None, CALL_TIMEOUT)?
            .json("GET /info")?;
        if !spec.runtime.is_empty() && info["Runtimes"].get(&spec.runtime).is_none() {
            return Err(DockerError::RuntimeMissing {
                runtime: spec.runtime.clone(),
                name: spec.name.clone(),
                socket: self.socket.clone(),
            });
        }
        if self
            .found(&format!("/images/{}/json", spec.image))?
            .is_none()
        {
            return Err(DockerError::ImageMissing {
                image: spec.image.clone(),
                name: spec.name.clone(),
                socket: self.socket.clone(),
            });
        }
        if let Some(taken) = self.found(&format!("/containers/{}/json", spec.name))? {
            let id = taken["Id"].as_str().unwrap_or_default().to_string();
            return Err(DockerError::NameTaken {
                name: spec.name.clone(),
                id,
                socket: self.socket.clone(),
            });
        }
        Ok(())
    }

    /// What `GET path` describes, or None when dockerd knows no such
    /// thing (404).
    fn found(&self, path: &str) -> Result<Option<Value>, DockerError> {
        let r = http::request(&self.socket, "GET", path, None, CALL_TIMEOUT)?;
        if r.status == 404 {
            return Ok(None);
        }
        success(r, "GET", path)?
            .json(&format!("GET {path}"))
            .map(Some)
    }

    /// Creates the container `spec` describes; returns its ID.
    pub fn create(&self, spec: &DockerSpec) -> Result<String, DockerError> {
        let what = "POST /containers/create";
        let body: Value =
            serde_json::from_str(&spec.create_body).map_err(|e| DockerError::BadAnswer {
                what: what.into(),
                why: format!("the source's create body is not JSON: {e}"),
            })?;
        let v = self
            .ok(
                "POST",
                &format!("/containers/create?name={}", spec.name),
                Some(&body),
                CALL_TIMEOUT,
            )?
            .json(what)?;
        v["Id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| DockerError::BadAnswer {
                what: what.into(),
                why: "no Id".into(),
            })
    }

    /// dockerd's data root (where containers/ID/checkpoints lives).
    pub fn root_dir(&self) -> Result<PathBuf, DockerError> {
        let info = self
            .ok("GET", "/info", None, CALL_TIMEOUT)?
            .json("GET /info")?;
        info["DockerRootDir"]
            .as_str()
            .map(PathBuf::from)
            .ok_or_else(|| DockerError::BadAnswer {
                what: "GET /info".into(),
                why: "no DockerRootDir".into(),
            })
    }

    /// Starts container `id` from its checkpoint `checkpoint` (`docker
    /// start --checkpoint`), waiting as long as the runtime takes.
    pub fn start_from_checkpoint(&self, id: &str, checkpoint: &str) -> Result<(), DockerError> {
        let path = format!("/containers/{id}/start?checkpoint={checkpoint}");
        self.ok("POST", &path, None, Duration::from_secs(3600))
            .map(drop)
    }

    /// Removes container `id`, killing what runs in it (`docker rm -f`).
    pub fn remove(&self, id: &str) -> Result<(), DockerError> {
        let path = format!("/containers/{id}?force=true");
        self.ok("DELETE", &path, None, CALL_TIMEOUT).map(drop)
    }

    /// Waits until container `id` has stopped (its init gone).
    pub fn wait_stopped(&self, id: &str) -> Result<(), DockerError> {
        let path = format!("/containers/{id}/wait?condition=not-running");
        self.ok("POST", &path, None, CALL_TIMEOUT).map(drop)
    }
}

/// `r`, dockerd's answer to `method path`, if a success; else its
/// refusal.
fn success(r: Response, method: &str, path: &str) -> Result<Response, DockerError> {
    if (200..300).contains(&r.status) {
        Ok(r)
    } else {
        Err(DockerError::Api {
            what: format!("{method} {path}"),
            status: r.status,
            message: r.message(),
        })
    }
}

/// The create request of the container `inspect` describes.
fn spec_of(inspect: &Value) -> Option<DockerSpec> {
    let name = inspect["Name"]
        .as_str()?
        .trim_start_matches('/')
        .to_string();
    let config = inspect["Config"].as_object()?;
    let image = config.get("Image")?.as_str()?.to_string();
    let host_config = inspect.get("HostConfig")?.clone();
    let runtime = host_config["Runtime"].as_str().unwrap_or("").to_string();
    let mut body = Value::Object(config.clone());
    body["HostConfig"] = host_config;
    // A user-defined network's endpoint keeps its address (IPAMConfig).
    let mut endpoints = serde_json::Map::new();
    if let Some(nets) = inspect["NetworkSettings"]["Networks"].as_object() {
        for (net, ep) in nets {
            if ep["IPAMConfig"].is_object() {
                let mut e = serde_json::Map::new();
                e.insert("IPAMConfig".into(), ep["IPAMConfig"].clone());
                endpoints.insert(net.clone(), Value::Object(e));
            }
        }
    }
    body["NetworkingConfig"] = serde_json::json!({ "EndpointsConfig": endpoints });
    Some(DockerSpec {
        name,
        image,
        runtime,
        create_body: body.to_string(),
    })
}

/// runc's record of the Docker container `id` whose init is `init`:
/// containerd's shim (the init's parent) runs in the bundle directory,
/// whose options.json names runc's root, under which the containerd
/// namespace (the bundle's parent directory's name) holds the state.
pub fn runc_container(id: &str, init: i32) -> Result<Container, DockerError> {
    let fail = |why: String| DockerError::Layout {
        id: id.to_string(),
        pid: init,
        why,
    };
    let shim = crate::proc::read_status(init)
        .map_err(|e| fail(e.to_string()))?
        .ppid;
    let bundle = std::fs::read_link(format!("/proc/{shim}/cwd"))
        .map_err(|e| fail(format!("the shim {shim}'s working directory: {e}")))?;
    let options = bundle.join("options.json");
    let root = std::fs::read(&options)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v["root"].as_str().map(PathBuf::from))
        .ok_or_else(|| fail(format!("{} names no runc root", options.display())))?;
    let namespace = bundle
        .parent()
        .and_then(Path::file_name)
        .ok_or_else(|| fail(format!("{} has no namespace", bundle.display())))?;
    Ok(Container::new(
        Runtime::Runc,
        Some(&root.join(namespace)),
        id,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_create_body_comes_from_inspect() {
        let inspect = serde_json::json!({
            "Id": "abc", "Name": "/looper",
            "Config": {"Image": "busybox", "Hostname": "abc", "Cmd": ["sh"]},
            "HostConfig": {"Runtime": "ferry", "NetworkMode": "net1"},
            "NetworkSettings": {"Networks": {
                "net1": {"IPAMConfig": {"IPv4Address": "10.5.0.9"}},
                "bridge": {"IPAMConfig": null}
            }}
        });
        let spec = spec_of(&inspect).unwrap();
        assert_eq!(
            (
                spec.name.as_str(),
                spec.image.as_str(),
                spec.runtime.as_str()
            ),
            ("looper", "busybox", "ferry")
        );
        let body: Value = serde_json::from_str(&spec.create_body).unwrap();
        assert_eq!(body["Hostname"], "abc");
        assert_eq!(body["HostConfig"]["NetworkMode"], "net1");
        let eps = &body["NetworkingConfig"]["EndpointsConfig"];
        assert_eq!(eps["net1"]["IPAMConfig"]["IPv4Address"], "10.5.0.9");
        assert!(eps.get("bridge").is_none());
    }
}
