//! `scribble projects` and `scribble keys`: edit the projects file the servers read. Keys are
//! printed once when issued and stored only as their SHA-256; every change is written to a new
//! file that replaces the old one, so a server reloading it never reads half a file.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};
use chrono::{SecondsFormat, Utc};
use scribble_domain::project::{KeyKind, Project, Projects, RateLimit};

use crate::cli::{KeyKindArg, KeysCommand, ProjectSettingsArgs, ProjectsCommand};

pub fn projects(command: ProjectsCommand) -> anyhow::Result<()> {
    match command {
        ProjectsCommand::List(file) => {
            let projects = read(&file.projects_file)?;
            println!("name\twrite keys\tread keys\tretention days\trate limit\tfull IPs");
            for project in &projects.projects {
                let active = |kind| {
                    project
                        .keys
                        .iter()
                        .filter(|key| key.kind == kind && key.revoked.is_none())
                        .count()
                };
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    project.name,
                    active(KeyKind::Write) + project.write_keys.len(),
                    active(KeyKind::Read) + project.read_keys.len(),
                    project
                        .retention_days
                        .map_or("for ever".to_owned(), |days| days.to_string()),
                    project
                        .rate_limit
                        .map_or("none".to_owned(), |limit| format!(
                            "{}/s, burst {}",
                            limit.events_per_second, limit.burst
                        )),
                    if project.keep_full_ip {
                        "kept"
                    } else {
                        "truncated"
                    },
                );
            }
            Ok(())
        }
        ProjectsCommand::Add(args) => {
            let path = &args.file.projects_file;
            let mut projects = if path.exists() {
                read(path)?
            } else {
                Projects::default()
            };
            if projects.named(&args.name).is_some() {
                bail!(
                    "a project named {:?} already exists; change it with `scribble projects set`",
                    args.name
                );
            }
            let mut project = Project {
                name: args.name.clone(),
                ..Project::default()
            };
            apply(&mut project, &args.settings);
            projects.projects.push(project);
            let now = now();
            let mut rng = rand::thread_rng();
            let (write, _) = projects.issue_key(&args.name, KeyKind::Write, &mut rng, &now)?;
            let (read, _) = projects.issue_key(&args.name, KeyKind::Read, &mut rng, &now)?;
            write_file(path, &projects)?;
            println!("project {} added to {}", args.name, path.display());
            println!("write key (collector, ingest only): {write}");
            println!("read key (query API, reports only): {read}");
            println!("keep them now: they are not stored and cannot be shown again");
            Ok(())
        }
        ProjectsCommand::Set(args) => {
            let path = &args.file.projects_file;
            let mut projects = read(path)?;
            let project = projects
                .projects
                .iter_mut()
                .find(|project| project.name == args.name)
                .with_context(|| {
                    format!(
                        "no project is named {:?} in {}; `scribble projects list` shows them",
                        args.name,
                        path.display()
                    )
                })?;
            apply(project, &args.settings);
            if args.no_rate_limit {
                project.rate_limit = None;
            }
            if args.no_retention {
                project.retention_days = None;
            }
            write_file(path, &projects)?;
            println!("project {} updated in {}", args.name, path.display());
            Ok(())
        }
    }
}

pub fn keys(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::List(args) => {
            let projects = read(&args.file.projects_file)?;
            println!("id\tproject\tkind\tcreated\trevoked");
            for project in &projects.projects {
                if args
                    .project
                    .as_ref()
                    .is_some_and(|name| *name != project.name)
                {
                    continue;
                }
                for key in &project.keys {
                    println!(
                        "{}\t{}\t{}\t{}\t{}",
                        key.id,
                        project.name,
                        kind_name(key.kind),
                        key.created,
                        key.revoked.as_deref().unwrap_or("-"),
                    );
                }
            }
            Ok(())
        }
        KeysCommand::Create(args) => {
            let path = &args.file.projects_file;
            let mut projects = read(path)?;
            let kind = match args.kind {
                KeyKindArg::Write => KeyKind::Write,
                KeyKindArg::Read => KeyKind::Read,
            };
            let (key, issued) =
                projects.issue_key(&args.project, kind, &mut rand::thread_rng(), &now())?;
            write_file(path, &projects)?;
            eprintln!(
                "{} key {} issued to project {}; it is shown only now:",
                kind_name(kind),
                issued.id,
                args.project
            );
            println!("{key}");
            Ok(())
        }
        KeysCommand::Revoke(args) => {
            let path = &args.file.projects_file;
            let mut projects = read(path)?;
            let revoked = projects.revoke_key(&args.id, &now())?;
            write_file(path, &projects)?;
            println!(
                "key {} revoked at {}; servers refuse it once they reload {} (within --projects-reload-seconds)",
                revoked.id,
                revoked.revoked.as_deref().unwrap_or_default(),
                path.display()
            );
            Ok(())
        }
    }
}

/// Sets what `settings` gives; a rate without a burst allows two seconds' worth at once.
fn apply(project: &mut Project, settings: &ProjectSettingsArgs) {
    if let Some(keep) = settings.keep_full_ip {
        project.keep_full_ip = keep;
    }
    if let Some(days) = settings.retention_days {
        project.retention_days = Some(days);
    }
    if let Some(rate) = settings.rate_limit {
        project.rate_limit = Some(RateLimit {
            events_per_second: rate,
            burst: settings.burst.unwrap_or(rate.saturating_mul(2)),
        });
    }
    if !settings.redirect_hosts.is_empty() {
        project.redirect_hosts = settings.redirect_hosts.clone();
    }
}

fn kind_name(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::Write => "write",
        KeyKind::Read => "read",
    }
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Reads and checks the projects file at `path`.
pub fn read(path: &Path) -> anyhow::Result<Projects> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the projects file {}", path.display()))?;
    parse(&text, path)
}

/// Parses and checks the text of the projects file at `path`.
pub fn parse(text: &str, path: &Path) -> anyhow::Result<Projects> {
    let projects = serde_json::from_str::<Projects>(text).with_context(|| {
        format!(
            "{} is not a projects file (see README, Projects and keys)",
            path.display()
        )
    })?;
    projects
        .check()
        .with_context(|| format!("the projects in {} cannot be served", path.display()))?;
    Ok(projects)
}

/// Writes `projects` to a new file beside `path`, readable by its owner only, then renames it
/// over `path`.
fn write_file(path: &Path, projects: &Projects) -> anyhow::Result<()> {
    projects
        .check()
        .context("the change would leave projects that cannot be served")?;
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut file = tempfile::NamedTempFile::new_in(directory)
        .with_context(|| format!("cannot write beside {}", path.display()))?;
    serde_json::to_writer_pretty(&mut file, projects)?;
    file.write_all(b"\n")?;
    file.as_file().sync_all()?;
    file.persist(path)
        .with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}
