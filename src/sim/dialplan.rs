//! A small `extensions.conf` reader: `[globals]`, contexts, `exten =>` and `same => n`.
//! Enough to model the recorded server's `test` context (the default) and similar ones.

/// The dialplan text the recorded Asterisk ran (fixtures `config/extensions.conf`).
const DEFAULT_CONF: &str = include_str!("extensions.conf");

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub priority: u32,
    pub app: String,
    pub data: String,
    /// Line in the source file (shown by `dialplan show`).
    pub line: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extension {
    pub name: String,
    pub steps: Vec<Step>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context {
    pub name: String,
    pub extensions: Vec<Extension>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dialplan {
    pub file: String,
    pub globals: Vec<(String, String)>,
    pub contexts: Vec<Context>,
}

impl Default for Dialplan {
    fn default() -> Self {
        Dialplan::parse("extensions.conf", DEFAULT_CONF)
    }
}

impl Dialplan {
    /// Parses the subset used here. Lines it does not understand are ignored, like comments.
    pub fn parse(file: &str, text: &str) -> Dialplan {
        let mut plan = Dialplan {
            file: file.into(),
            globals: Vec::new(),
            contexts: Vec::new(),
        };
        let mut section = String::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split(';').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.trim().to_string();
                if section != "general" && section != "globals" {
                    plan.contexts.push(Context {
                        name: section.clone(),
                        extensions: Vec::new(),
                    });
                }
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let (key, value) = (key.trim(), value.trim_start_matches('>').trim());
            if section == "globals" {
                plan.globals.push((key.into(), value.into()));
                continue;
            }
            let Some(ctx) = plan.contexts.last_mut() else {
                continue;
            };
            match key {
                "exten" => {
                    let mut parts = value.splitn(3, ',');
                    let (Some(name), Some(prio), Some(app)) =
                        (parts.next(), parts.next(), parts.next())
                    else {
                        continue;
                    };
                    let step = make_step(prio, 0, app, i + 1);
                    match ctx.extensions.iter_mut().find(|e| e.name == name.trim()) {
                        Some(ext) => ext.steps.push(step),
                        None => ctx.extensions.push(Extension {
                            name: name.trim().into(),
                            steps: vec![step],
                        }),
                    }
                }
                "same" => {
                    let Some((prio, app)) = value.split_once(',') else {
                        continue;
                    };
                    let Some(ext) = ctx.extensions.last_mut() else {
                        continue;
                    };
                    let last = ext.steps.last().map_or(0, |s| s.priority);
                    ext.steps.push(make_step(prio, last, app, i + 1));
                }
                _ => {}
            }
        }
        plan
    }

    pub fn context(&self, name: &str) -> Option<&Context> {
        self.contexts.iter().find(|c| c.name == name)
    }

    pub fn extension(&self, context: &str, exten: &str) -> Option<&Extension> {
        self.context(context)?
            .extensions
            .iter()
            .find(|e| e.name == exten)
    }

    pub fn step(&self, context: &str, exten: &str, priority: u32) -> Option<&Step> {
        self.extension(context, exten)?
            .steps
            .iter()
            .find(|s| s.priority == priority)
    }
}

fn make_step(prio: &str, last: u32, app: &str, line: usize) -> Step {
    let prio = prio.trim();
    let priority = if prio == "n" {
        last + 1
    } else {
        prio.parse().unwrap_or(last + 1)
    };
    let app = app.trim();
    let (name, data) = match app.split_once('(') {
        Some((name, rest)) => (name, rest.strip_suffix(')').unwrap_or(rest)),
        None => (app, ""),
    };
    Step {
        priority,
        app: name.trim().into(),
        data: data.into(),
        line,
    }
}
