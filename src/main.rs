//! The `slayer` command line: parses flags with clap and dispatches to the engine's
//! commands and the stage crate's model tools. No logic lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use slayer_engine::commands;

mod model_cmd;

#[global_allocator]
static ALLOCATOR: slayer_stages::alloc::Allocator = slayer_stages::alloc::Allocator;

#[derive(Parser)]
#[command(
    name = "slayer",
    version,
    about = "LLM layer-surgery experiments from YAML manifests, cached by content hash"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a manifest's stages (only what changed reruns)
    Run {
        /// Manifest file (default: slayer.yaml)
        manifest: Option<PathBuf>,
        /// Most stages at once (0 = number of cores)
        #[arg(long, short, default_value_t = 0)]
        jobs: usize,
        /// Run only these stages (and what they need)
        #[arg(long, num_args = 1..)]
        only: Vec<String>,
        /// Rerun these stages even if cached
        #[arg(long, num_args = 1..)]
        force: Vec<String>,
        /// After a failure, keep running stages that do not depend on it
        #[arg(long)]
        keep_going: bool,
        /// Validate and print the plan; run nothing
        #[arg(long)]
        dry_run: bool,
        /// Print nothing but errors
        #[arg(long, short)]
        quiet: bool,
        /// Where stages run: `local` (each in a child process of its own), `slurm` (each
        /// a Slurm job; settings in slayer.toml's [executor.slurm]) or `inline` (threads
        /// of this process). Default: slayer.toml's [executor] kind, else `local`
        #[arg(long)]
        executor: Option<String>,
        /// Remote cache, s3://BUCKET/PREFIX (default: `remote` in slayer.toml): results
        /// missing here are pulled instead of run, results run here are pushed
        #[arg(long)]
        remote: Option<String>,
        /// GPUs the local scheduler hands out to stages with `resources.gpus` (default:
        /// CUDA_VISIBLE_DEVICES, else the /dev/nvidiaN devices)
        #[arg(long)]
        gpus: Option<usize>,
        /// Memory the local scheduler hands out to stages with `resources.memory`, e.g.
        /// `64GiB` (default: the machine's, or its cgroup's limit)
        #[arg(long, value_parser = parse_memory)]
        memory: Option<u64>,
        /// Read and hash every input file and every reused output again instead of
        /// trusting size + mtime (finds bit rot and edits that kept the mtime)
        #[arg(long)]
        verify_inputs: bool,
    },
    /// Runs one stage attempt from a job spec (the executors' entry point)
    #[command(name = "__instance", hide = true)]
    Instance { spec: PathBuf },
    /// Per stage: cached, stale or missing, and why
    Status {
        manifest: Option<PathBuf>,
        #[arg(long)]
        json: bool,
        /// Also ask this remote cache (default: `remote` in slayer.toml) about results
        /// missing here
        #[arg(long)]
        remote: Option<String>,
    },
    /// Why a stage would rerun (the chain of reasons)
    Why {
        /// `[MANIFEST] STAGE`
        #[arg(num_args = 1..=2, required = true)]
        args: Vec<String>,
    },
    /// A stage's run record, with absolute output paths
    Show {
        /// `[MANIFEST] STAGE`
        #[arg(num_args = 1..=2, required = true)]
        args: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Two run records side by side: what differs in params, inputs, env, metrics
    Diff {
        /// `[MANIFEST] A B`: stage instances or record fingerprints (8+ characters)
        #[arg(num_args = 2..=3, required = true)]
        args: Vec<String>,
        /// Also list what is equal
        #[arg(long)]
        all: bool,
    },
    /// The manifest's DAG with each instance's state, as Mermaid, Graphviz DOT or SVG
    Dag {
        manifest: Option<PathBuf>,
        /// `mermaid` (renders in GitHub Markdown), `dot` (`dot -Tsvg`) or `svg` (drawn by
        /// slayer, one column per depth)
        #[arg(long, default_value = "mermaid")]
        format: slayer_engine::dag::DagFormat,
    },
    /// Provenance of an artifact (a path) or a stage, back to raw inputs
    Lineage {
        target: String,
        #[arg(long)]
        manifest: Option<PathBuf>,
    },
    /// Delete results the given manifests no longer reach
    Gc { manifests: Vec<PathBuf> },
    /// Re-hash the store; report corrupted objects and records, missing, modified and
    /// dangling outputs (non-zero exit if any)
    Verify {
        /// Workspace (directory holding .slayer)
        #[arg(default_value = ".")]
        workspace: PathBuf,
        /// Remove what is damaged (corrupt records, damaged results, bad objects)
        #[arg(long)]
        repair: bool,
    },
    /// The results table of a manifest's evaluations (from run records; runs nothing)
    Report {
        manifest: Option<PathBuf>,
        /// Stages to tabulate (default: every `eval` instance)
        #[arg(long, num_args = 1..)]
        stages: Vec<String>,
        /// Write the whole experiment as one self-contained page, DIR/index.html (DAG,
        /// timeline, resources, results linked to their records, reports, plots)
        #[arg(long, value_name = "DIR", conflicts_with = "stages")]
        html: Option<PathBuf>,
    },
    /// Upload every locally cached result the manifest reaches to the remote cache
    Push {
        manifest: Option<PathBuf>,
        /// Remote cache, s3://BUCKET/PREFIX (default: `remote` in slayer.toml)
        #[arg(long)]
        remote: Option<String>,
    },
    /// Download every result the manifest reaches that is missing locally
    Pull {
        manifest: Option<PathBuf>,
        /// Remote cache, s3://BUCKET/PREFIX (default: `remote` in slayer.toml)
        #[arg(long)]
        remote: Option<String>,
        /// Fetch only the run records (metrics for reports), not the outputs
        #[arg(long)]
        metrics_only: bool,
    },
    /// Print the manifest JSON Schema
    Schema,
    /// List stage kinds with their inputs, outputs and parameters
    Kinds {
        /// The stage catalog as Markdown (docs/stages.md)
        #[arg(long)]
        markdown: bool,
    },
    /// Run one stage kind ad hoc, outside any manifest and cache
    Exec {
        kind: String,
        /// Input NAME=PATH (repeatable)
        #[arg(long = "in", value_parser = parse_in)]
        inputs: Vec<(String, PathBuf)>,
        /// Parameter KEY=VALUE, VALUE read as YAML (repeatable)
        #[arg(long = "set", value_parser = parse_set)]
        sets: Vec<(String, String)>,
        /// Output directory
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// One rank of a data-parallel train stage (started by the stage under mpirun; the
    /// job is named by SLAYER_TRAIN_RANK_JOB)
    #[command(hide = true)]
    TrainRank,
    #[command(flatten)]
    Model(model_cmd::ModelCmd),
}

fn parse_in(s: &str) -> Result<(String, PathBuf), String> {
    let (k, v) = s.split_once('=').ok_or("expected NAME=PATH")?;
    Ok((k.to_string(), PathBuf::from(v)))
}

fn parse_set(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or("expected KEY=VALUE")?;
    Ok((k.to_string(), v.to_string()))
}

fn manifest_and_stage(args: &[String]) -> (PathBuf, String) {
    match args {
        [m, s] => (PathBuf::from(m), s.clone()),
        [s] => (PathBuf::from("slayer.yaml"), s.clone()),
        _ => (PathBuf::from("slayer.yaml"), String::new()),
    }
}

/// `--memory SIZE` in bytes.
fn parse_memory(s: &str) -> Result<u64, String> {
    slayer_engine::stage::memory_bytes(s)
}

fn default_manifest(m: Option<PathBuf>) -> PathBuf {
    m.unwrap_or_else(|| PathBuf::from("slayer.yaml"))
}

/// The remote cache named by `--remote` or the workspace's slayer.toml, if any.
fn open_configured_remote(
    manifest: &std::path::Path,
    flag: Option<&str>,
) -> Result<Option<std::sync::Arc<dyn slayer_cache::RemoteCache>>, slayer_engine::EngineError> {
    match commands::configured_remote_url(manifest, flag)? {
        None => Ok(None),
        Some(url) => open_remote(manifest, Some(&url))
            .map(|r| Some(std::sync::Arc::new(r) as std::sync::Arc<dyn slayer_cache::RemoteCache>)),
    }
}

/// The remote cache named by `--remote` or the workspace's slayer.toml.
fn open_remote(
    manifest: &std::path::Path,
    flag: Option<&str>,
) -> Result<slayer_remote::S3Remote, slayer_engine::EngineError> {
    let url = commands::remote_url(manifest, flag)?;
    slayer_remote::S3Remote::from_url(&url)
        .map_err(|e| slayer_engine::EngineError::Invalid(e.to_string()))
}

fn main() -> ExitCode {
    // Die quietly when stdout is closed early (`slayer status | head`), as CLI tools do,
    // instead of panicking on a broken pipe.
    // SAFETY: called first thing in main, before any thread exists.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    slayer_stages::alloc::keep_freed_memory();
    let cli = Cli::parse();
    let registry = slayer_stages::registry();
    let result = match cli.command {
        Cmd::Run {
            manifest,
            jobs,
            only,
            force,
            keep_going,
            dry_run,
            quiet,
            executor,
            remote,
            gpus,
            memory,
            verify_inputs,
        } => {
            slayer_engine::interrupt::install();
            let manifest = default_manifest(manifest);
            std::env::current_exe()
                .map_err(|e| {
                    slayer_engine::EngineError::Failed(format!(
                        "cannot find the slayer binary: {e}"
                    ))
                })
                .and_then(|program| {
                    let remote = open_configured_remote(&manifest, remote.as_deref())?;
                    let args = commands::RunArgs {
                        jobs,
                        only,
                        force,
                        keep_going,
                        dry_run,
                        quiet,
                        executor,
                        program,
                        remote,
                        gpus,
                        memory,
                        verify_inputs,
                    };
                    commands::run(&manifest, &registry, &args).map(|()| args)
                })
                .and_then(|args| {
                    if args.dry_run || args.quiet {
                        Ok(())
                    } else {
                        slayer_stages::report::command::print_stage_reports(&manifest, &registry)
                    }
                })
        }
        Cmd::Instance { spec } => {
            slayer_engine::interrupt::die_with_group_on_term();
            let progress = slayer_engine::child::progress_to_stdout();
            return ExitCode::from(
                slayer_engine::job::run_job_file(&registry, &spec, progress) as u8
            );
        }
        Cmd::Status {
            manifest,
            json,
            remote,
        } => {
            let manifest = default_manifest(manifest);
            open_configured_remote(&manifest, remote.as_deref())
                .and_then(|r| commands::status(&manifest, &registry, json, r.as_deref()))
        }
        Cmd::Why { args } => {
            let (m, s) = manifest_and_stage(&args);
            commands::why(&m, &registry, &s)
        }
        Cmd::Show { args, json } => {
            let (m, s) = manifest_and_stage(&args);
            commands::show(&m, &registry, &s, json)
        }
        Cmd::Diff { args, all } => match args.as_slice() {
            [m, a, b] => commands::diff(&PathBuf::from(m), &registry, a, b, all),
            [a, b] => commands::diff(&PathBuf::from("slayer.yaml"), &registry, a, b, all),
            _ => Err(slayer_engine::EngineError::Invalid(
                "usage: slayer diff [MANIFEST] A B".into(),
            )),
        },
        Cmd::Dag { manifest, format } => {
            commands::dag(&default_manifest(manifest), &registry, format)
        }
        Cmd::Lineage { target, manifest } => {
            commands::lineage(&default_manifest(manifest), &registry, &target)
        }
        Cmd::Gc { manifests } => {
            let manifests = if manifests.is_empty() {
                vec![PathBuf::from("slayer.yaml")]
            } else {
                manifests
            };
            commands::gc(&manifests, &registry)
        }
        Cmd::Verify { workspace, repair } => commands::verify(&workspace, repair),
        Cmd::Report {
            manifest,
            html: Some(dir),
            ..
        } => slayer_stages::report::page::write(&default_manifest(manifest), &registry, &dir)
            .map(|path| println!("wrote {}", path.display())),
        Cmd::Report {
            manifest,
            stages,
            html: None,
        } => slayer_stages::report::command::print(&default_manifest(manifest), &registry, &stages),
        Cmd::Push { manifest, remote } => {
            let manifest = default_manifest(manifest);
            open_remote(&manifest, remote.as_deref())
                .and_then(|r| commands::push(&manifest, &registry, &r))
        }
        Cmd::Pull {
            manifest,
            remote,
            metrics_only,
        } => {
            let manifest = default_manifest(manifest);
            open_remote(&manifest, remote.as_deref())
                .and_then(|r| commands::pull(&manifest, &registry, &r, metrics_only))
        }
        Cmd::Schema => {
            let schema = slayer_engine::schema::manifest_schema(&registry);
            println!(
                "{}",
                serde_json::to_string_pretty(&schema).unwrap_or_default()
            );
            Ok(())
        }
        Cmd::Kinds { markdown } => {
            if markdown {
                print!("{}", commands::kinds_markdown(&registry));
            } else {
                print!("{}", commands::kinds(&registry));
            }
            Ok(())
        }
        Cmd::Exec {
            kind,
            inputs,
            sets,
            out,
            device,
        } => commands::exec(&registry, &kind, &inputs, &sets, &out, &device).map(|metrics| {
            println!(
                "{}",
                serde_json::to_string_pretty(&metrics).unwrap_or_default()
            );
        }),
        Cmd::TrainRank => slayer_stages::train::ranks::run_rank_from_env()
            .map_err(|e| slayer_engine::EngineError::Failed(e.to_string())),
        Cmd::Model(cmd) => {
            model_cmd::run(cmd).map_err(|e| slayer_engine::EngineError::Failed(e.to_string()))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
