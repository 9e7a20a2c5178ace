//! Cgroup membership (/proc/PID/task/TID/cgroup) and the cgroup
//! hierarchies mounted in this mount namespace (/proc/self/mountinfo), as
//! both the dump (reading a tree's cgroups) and the restore (putting it
//! back) need them.

use super::{parse_err, read_text, ProcError};
use std::path::{Path, PathBuf};

/// One line of /proc/PID/cgroup: the cgroup of a task in one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupLine {
    /// The hierarchy, as the file names it: its controllers
    /// ("cpu,cpuacct", "memory"), its name ("name=zdtmtst"), or empty for
    /// the cgroup v2 unified hierarchy.
    pub controllers: String,
    /// The cgroup, from the hierarchy's root (as this cgroup namespace
    /// sees it): "/" or "/a/b".
    pub path: String,
}

/// A cgroup root given for a checkpoint or a restore (CRIU's
/// --cgroup-root): the cgroup paths of the hierarchies it names are
/// recorded relative to it at checkpoint, and put below it at restore,
/// instead of relative to the program's own cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupRoot {
    /// The controllers or name of the hierarchies it applies to
    /// ("cpu,cpuacct", "name=zdtmtst"); None: every hierarchy no other
    /// root names.
    pub controllers: Option<String>,
    /// The root cgroup, from the hierarchy's root ("/prefix").
    pub path: String,
}

impl std::str::FromStr for CgroupRoot {
    type Err = String;

    /// Parses "[CONTROLLER:]PATH", PATH absolute.
    fn from_str(s: &str) -> Result<Self, String> {
        let (controllers, path) = match s.split_once(':') {
            Some((c, p)) if !s.starts_with('/') => (Some(c.to_string()), p),
            _ => (None, s),
        };
        if !path.starts_with('/') || controllers.as_deref() == Some("") {
            return Err(format!(
                "cgroup root {s:?} is not [CONTROLLER:]PATH with an absolute PATH"
            ));
        }
        Ok(CgroupRoot {
            controllers,
            path: path.to_string(),
        })
    }
}

/// The root `roots` give hierarchy `controllers` (as /proc/PID/cgroup
/// names it): the first naming one of its controllers, else the first
/// naming none (None: no root given for it).
pub fn root_for<'a>(roots: &'a [CgroupRoot], controllers: &str) -> Option<&'a str> {
    let named = |r: &&CgroupRoot| {
        r.controllers.as_deref().is_some_and(|c| {
            c.split(',')
                .any(|c| controllers.split(',').any(|h| !c.is_empty() && h == c))
        })
    };
    roots
        .iter()
        .find(named)
        .or_else(|| roots.iter().find(|r| r.controllers.is_none()))
        .map(|r| r.path.as_str())
}

/// Parses /proc/PID/cgroup text ("ID:CONTROLLERS:PATH" lines).
pub fn parse_cgroups(path: &Path, text: &str) -> Result<Vec<CgroupLine>, ProcError> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut f = l.splitn(3, ':');
            match (f.next(), f.next(), f.next()) {
                (Some(_), Some(controllers), Some(p)) => Ok(CgroupLine {
                    controllers: controllers.to_string(),
                    path: p.to_string(),
                }),
                _ => Err(parse_err(path, format!("a line without 3 fields: {l:?}"))),
            }
        })
        .collect()
}

/// The cgroups of thread `tid` of process `pid`.
pub fn read_cgroups(pid: i32, tid: i32) -> Result<Vec<CgroupLine>, ProcError> {
    let (path, text) = read_text(PathBuf::from(format!("/proc/{pid}/task/{tid}/cgroup")))?;
    parse_cgroups(&path, &text)
}

/// The cgroups of the calling process (the agent or CLI that dumps or
/// restores).
pub fn own_cgroups() -> Result<Vec<CgroupLine>, ProcError> {
    let (path, text) = read_text(PathBuf::from("/proc/self/cgroup"))?;
    parse_cgroups(&path, &text)
}

/// Where a hierarchy named as in /proc/PID/cgroup (`controllers`) is
/// mounted in mountinfo text `mountinfo`, given the controllers this
/// kernel has (`known`, the first column of /proc/cgroups): a mount of
/// type cgroup whose options name exactly those controllers (cgroup2 for
/// the empty name), with the cgroup its root shows. A mount of the
/// hierarchy's root comes first.
pub fn parse_hierarchy_mounts(
    mountinfo: &str,
    known: &[String],
    controllers: &str,
) -> Vec<(String, PathBuf)> {
    let wanted: Vec<&str> = controllers.split(',').filter(|c| !c.is_empty()).collect();
    let mut mounts: Vec<(String, PathBuf)> = mountinfo
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let mut right = right.split(' ');
            let (fstype, _source, options) = (right.next()?, right.next()?, right.next()?);
            let matches = match fstype {
                "cgroup2" => wanted.is_empty(),
                "cgroup" => {
                    let named: Vec<&str> = options
                        .split(',')
                        .filter(|o| o.starts_with("name=") || known.iter().any(|k| k == o))
                        .collect();
                    !wanted.is_empty()
                        && named.len() == wanted.len()
                        && wanted.iter().all(|w| named.contains(w))
                }
                _ => false,
            };
            (matches && left.len() > 4).then(|| {
                let root = super::notify::unescape_octal(left[3]);
                let point = super::notify::unescape_octal(left[4]);
                (root.to_string_lossy().into_owned(), PathBuf::from(point))
            })
        })
        .collect();
    mounts.sort_by_key(|(root, _)| root != "/");
    mounts
}

/// The directory of cgroup `path` of the hierarchy named `controllers`
/// in this mount namespace, through a mount whose root holds it (None:
/// the hierarchy is not mounted here, or only below that cgroup).
pub fn cgroup_dir(controllers: &str, path: &str) -> Result<Option<PathBuf>, ProcError> {
    let (_, mountinfo) = read_text(PathBuf::from("/proc/self/mountinfo"))?;
    let (_, cgroups) = read_text(PathBuf::from("/proc/cgroups"))?;
    let known: Vec<String> = cgroups
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    Ok(parse_hierarchy_mounts(&mountinfo, &known, controllers)
        .into_iter()
        .find_map(|(root, point)| {
            let below = Path::new(path).strip_prefix(&root).ok()?;
            Some(point.join(below))
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_lines() {
        let text = "9:name=systemd:/\n4:memory:/process_api/af\n2:cpu,cpuacct:/a:b\n0::/\n";
        let l = parse_cgroups(Path::new("x"), text).unwrap();
        assert_eq!(l.len(), 4);
        assert_eq!(l[1].controllers, "memory");
        assert_eq!(l[1].path, "/process_api/af");
        assert_eq!(l[2].path, "/a:b");
        assert_eq!(l[3].controllers, "");
        assert!(parse_cgroups(Path::new("x"), "garbage\n").is_err());
    }

    #[test]
    fn cgroup_roots() {
        let roots: Vec<CgroupRoot> = ["/newroot", "name=zdtmtst:/prefix", "cpu:/c"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(roots[0].controllers, None);
        assert_eq!(roots[1].controllers.as_deref(), Some("name=zdtmtst"));
        assert_eq!(root_for(&roots, "name=zdtmtst"), Some("/prefix"));
        assert_eq!(
            root_for(&roots, "name=zdtmtst.defaultroot"),
            Some("/newroot")
        );
        assert_eq!(root_for(&roots, "cpu,cpuacct"), Some("/c"));
        assert_eq!(root_for(&roots[1..], "memory"), None);
        assert!("prefix".parse::<CgroupRoot>().is_err());
        assert!(":/prefix".parse::<CgroupRoot>().is_err());
        assert!("cpu:prefix".parse::<CgroupRoot>().is_err());
    }

    #[test]
    fn hierarchy_mounts() {
        let text = "\
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct,clone_children
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
90 31 0:40 /sub /tmp/my\\040dir rw,relatime - cgroup none rw,name=zdtmtst
91 31 0:40 / /tmp/zdtm rw,relatime - cgroup none rw,name=zdtmtst
";
        let known: Vec<String> = ["cpu", "cpuacct", "memory"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let m = |c| parse_hierarchy_mounts(text, &known, c);
        assert_eq!(m("cpu"), vec![("/".into(), "/sys/fs/cgroup/cpu".into())]);
        assert_eq!(
            m("cpu,cpuacct")[0].1,
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")
        );
        assert_eq!(
            m("name=systemd")[0].1,
            PathBuf::from("/sys/fs/cgroup/systemd")
        );
        assert_eq!(m("")[0].1, PathBuf::from("/sys/fs/cgroup/unified"));
        assert_eq!(
            m("name=zdtmtst"),
            vec![
                ("/".into(), "/tmp/zdtm".into()),
                ("/sub".into(), "/tmp/my dir".into())
            ]
        );
        assert!(m("pids").is_empty());
    }
}
