//! The few CLI commands `Action: Command` supports, formatted like Asterisk 22's CLI.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::calls::ast::Cause;
use super::calls::channel::send;
use super::calls::model::Ctl;
use super::commands::COMMANDS;
use super::core::{Core, lock};

pub(crate) const VERSION_LINE: &str =
    "Asterisk 22.10.1 built by root @ vm on a x86_64 running Linux on 2026-11-26 10:50:34 UTC";

/// The output lines of a CLI command; `Err` carries the lines of a failed command.
pub(crate) fn run(core: &Core, command: &str) -> Result<Vec<String>, Vec<String>> {
    let words: Vec<&str> = command.split_whitespace().collect();
    match words.as_slice() {
        ["core", "show", "version"] => Ok(vec![VERSION_LINE.into()]),
        ["core", "show", "channels"] => Ok(channels(core, false)),
        ["core", "show", "channels", "count"] => Ok(channels(core, true)),
        ["core", "show", "channels", "concise"] => Ok(concise(core)),
        ["core", "show", "uptime", "seconds"] => {
            let up = core.uptime().as_secs();
            Ok(vec![
                format!("System uptime: {up}"),
                format!("Last reload: {up}"),
            ])
        }
        ["channel", "request", "hangup", target] => Ok(hangup(core, target)),
        ["core", "show", "uptime"] => {
            let up = human(core.uptime());
            Ok(vec![
                format!("System uptime: {up}"),
                format!("Last reload: {up}"),
            ])
        }
        ["dialplan", "show", ctx] => dialplan(core, ctx),
        ["manager", "show", "commands"] => {
            let mut out = vec![
                format!("  {:<31} {}", "Action", "Synopsis"),
                format!("  {:<31} {}", "------", "--------"),
            ];
            out.extend(COMMANDS.iter().map(|(name, synopsis, _)| {
                let synopsis: String = synopsis.chars().take(46).collect();
                format!("  {name:<31.31} {synopsis}")
            }));
            Ok(out)
        }
        _ => {
            let first_two = words.iter().take(2).copied().collect::<Vec<_>>().join(" ");
            Err(vec![format!(
                "No such command '{command}' (type 'core show help {first_two}' for other possible commands)"
            )])
        }
    }
}

/// `1 hour, 2 minutes, 3 seconds` as the CLI prints uptimes.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    let parts = [
        (s / 86_400, "day"),
        (s / 3600 % 24, "hour"),
        (s / 60 % 60, "minute"),
        (s % 60, "second"),
    ];
    let words: Vec<String> = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n} {unit}{}", if *n == 1 { "" } else { "s" }))
        .collect();
    if words.is_empty() {
        "0 seconds".into()
    } else {
        words.join(", ")
    }
}

fn ess(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn channels(core: &Core, count_only: bool) -> Vec<String> {
    let calls = lock(&core.calls);
    let mut out = Vec::new();
    if !count_only {
        out.push(format!(
            "{:<64.64} {:<32.32} {:<7.7} {:<30.30}",
            "Channel", "Location", "State", "Application(Data)"
        ));
        for c in calls.channels.values().rev() {
            let location = if c.exten.is_empty() {
                "(None)".to_string()
            } else {
                format!("{}@{}:{}", c.exten, c.context, c.priority)
            };
            out.push(format!(
                "{:<64.64} {:<32.32} {:<7.7} {:<30.30}",
                c.name,
                location,
                c.state.desc(),
                format!("{}({})", c.app, c.appdata)
            ));
        }
    }
    let chans = calls.channels.len();
    let active = calls.active_calls();
    let processed = core.calls_processed.load(Ordering::Relaxed) as usize;
    out.push(format!("{chans} active channel{}", ess(chans)));
    out.push(format!(
        "{active} of 5000 max active call{} ({:5.2}% of capacity)",
        ess(active),
        active as f64 * 100.0 / 5000.0
    ));
    out.push(format!("{processed} call{} processed", ess(processed)));
    out
}

fn concise(core: &Core) -> Vec<String> {
    let calls = lock(&core.calls);
    calls
        .channels
        .values()
        .rev()
        .map(|c| {
            format!(
                "{}!{}!{}!{}!{}!{}!{}!!!!3!{}!!{}",
                c.name,
                c.context,
                c.exten,
                c.priority,
                c.state.desc(),
                c.app,
                c.appdata,
                c.created.elapsed().as_secs(),
                c.uniqueid
            )
        })
        .collect()
}

fn dialplan(core: &Core, ctx: &str) -> Result<Vec<String>, Vec<String>> {
    let plan = &core.cfg.dialplan;
    let Some(context) = plan.context(ctx) else {
        return Err(vec![format!("There is no existence of '{ctx}' context")]);
    };
    let mut out = vec![format!("[ Context '{ctx}' created by 'pbx_config' ]")];
    let mut priorities = 0;
    for ext in &context.extensions {
        for (i, step) in ext.steps.iter().enumerate() {
            let label = if i == 0 {
                format!("'{}' =>", ext.name)
            } else {
                String::new()
            };
            let app = format!("{}. {}({})", step.priority, step.app, step.data);
            out.push(format!(
                "  {label:<17} {app:<45} [{}:{}]",
                plan.file, step.line
            ));
            priorities += 1;
        }
    }
    out.push(String::new());
    let exts = context.extensions.len();
    out.push(format!(
        "-= {exts} extension{} ({priorities} priorit{}) in 1 context. =-",
        ess(exts),
        if priorities == 1 { "y" } else { "ies" }
    ));
    Ok(out)
}

/// `channel request hangup <name|all>`.
fn hangup(core: &Core, target: &str) -> Vec<String> {
    let chosen: Vec<(u64, String)> = lock(&core.calls)
        .channels
        .iter()
        .rev()
        .filter(|(_, c)| target == "all" || c.name == target)
        .map(|(id, c)| (*id, c.name.clone()))
        .collect();
    if chosen.is_empty() && target != "all" {
        return vec![format!("{target} is not a known channel")];
    }
    chosen
        .into_iter()
        .map(|(id, name)| {
            send(
                core,
                id,
                Ctl::Hangup {
                    cause: Cause::NORMAL_CLEARING,
                    requested: true,
                },
            );
            format!("Requested Hangup on channel '{name}'")
        })
        .collect()
}

/// Commands manager.c refuses to run over AMI.
pub(crate) fn blacklisted(command: &str) -> bool {
    let words: Vec<&str> = command.split_whitespace().collect();
    matches!(
        words.as_slice(),
        ["module", "load" | "unload", ..] | ["restart", "gracefully", ..]
    )
}
