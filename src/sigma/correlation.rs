//! A Sigma correlation on event time: `event_count`, `value_count`, `temporal` and
//! `temporal_ordered` over a `timespan`, per `group-by` values.
//!
//! The windows are gatewatch's own, not rsigma's (which windows by arrival): events reach a
//! correlation in event-time order from the engine's reorder buffer, so however they were
//! interleaved within the allowed lateness the same windows close on the same events. In a
//! repartitioned run every event of one group travels under the group's values
//! ([`Shard::Group`]) to the one partition that owns them, so 12 partitions give the
//! alerts (and alert ids) one gives.
//!
//! - A condition with no upper bound (`gt`, `gte`) is judged on each event over the last
//!   `timespan` (sliding) and fires as soon as it holds; the group then starts afresh.
//! - A condition with one (`lt`, `lte`, `eq`, a range) can only be judged once the window
//!   is over: the window opens at the group's first event and is judged when the watermark
//!   passes its end.

use std::collections::VecDeque;

use rsigma_eval::CompiledRule;
use rsigma_parser::{
    ConditionExpr, ConditionOperator, CorrelationCondition, CorrelationRule, CorrelationType, SigmaRule,
};
use serde_json::Value;

use super::fields::{Field, View};
use crate::detectors::{human_duration, Detector, Limits};
use crate::event::{Entity, EntityKind, Event, Finding, Millis, Shard};
use crate::state::{KeyedState, StateStats};

/// The alert contract's entity a group-by field names, if it names one.
pub fn entity_of(f: Field) -> Option<EntityKind> {
    match f {
        Field::ClientIp => Some(EntityKind::SourceIp),
        Field::ClientId => Some(EntityKind::ClientId),
        Field::Username | Field::Token => Some(EntityKind::Token),
        Field::Route => Some(EntityKind::Route),
        _ => None,
    }
}

/// What the correlation counts.
#[derive(Clone, Debug)]
enum Count {
    Events,
    /// Distinct values of a field.
    Values(Field),
    /// Which referenced rules fired; with an expression over their names, that must hold,
    /// else every one must have fired.
    Rules(Option<ConditionExpr>),
    /// Every referenced rule, in the order listed.
    Sequence,
}

/// A referenced rule: its names (id, name) and matcher.
struct Referenced {
    names: Vec<String>,
    compiled: CompiledRule,
}

#[derive(Default)]
struct Group {
    /// Matching events' times (event_count), oldest first.
    times: VecDeque<Millis>,
    /// (time, value) of matching events (value_count), oldest first.
    values: VecDeque<(Millis, String)>,
    /// Per referenced rule: when it last fired (temporal), or the latest start of a chain
    /// that reached it (temporal_ordered).
    last: Vec<Option<Millis>>,
    /// For a bounded condition: when the window opened.
    opened: Option<Millis>,
    /// The values grouped by, as seen (for the alert).
    group: Vec<String>,
    /// Who sent the last event counted (the alert's entity when no group-by field names one).
    caller: Option<Entity>,
}

pub struct SigmaCorrelation {
    title: String,
    level: Option<rsigma_parser::Level>,
    tags: Vec<String>,
    count: Count,
    rules: Vec<Referenced>,
    group_by: Vec<(String, Field)>,
    /// Which group-by field names the entity, and its kind; `None` when none does: the alert
    /// is then about the caller of the last event counted, and the group is in its id.
    entity: Option<(usize, EntityKind)>,
    window: Millis,
    predicates: Vec<(ConditionOperator, u64)>,
    /// Judged at the window's end (the condition has an upper bound).
    bounded: bool,
    request: bool,
    state: KeyedState<String, Group>,
}

impl SigmaCorrelation {
    pub fn new(c: &CorrelationRule, all: &[SigmaRule], limits: Limits) -> Result<Self, String> {
        let mut rules = Vec::new();
        let mut request = false;
        for r in &c.rules {
            let rule = all
                .iter()
                .find(|x| x.id.as_deref() == Some(r) || x.name.as_deref() == Some(r))
                .ok_or_else(|| format!("references rule `{r}`, which is not in the rules folder"))?;
            let compiled = rsigma_eval::compile_rule(rule).map_err(|e| format!("rule `{r}` cannot compile: {e}"))?;
            request |= super::detection::reads_request(rule);
            let names = [rule.id.clone(), rule.name.clone(), Some(r.clone())].into_iter().flatten().collect();
            rules.push(Referenced { names, compiled });
        }
        if rules.len() > 64 {
            return Err("a correlation may reference at most 64 rules".into());
        }
        let mut group_by = Vec::new();
        for g in &c.group_by {
            let f = Field::parse(g).ok_or_else(|| format!("group-by field `{g}` is not known"))?;
            request |= f.in_request_line();
            group_by.push((g.clone(), f));
        }
        let entity = group_by.iter().enumerate().find_map(|(i, (_, f))| entity_of(*f).map(|k| (i, k)));
        let (predicates, count) = match (&c.condition, c.correlation_type) {
            (CorrelationCondition::Threshold { predicates, .. }, CorrelationType::EventCount) => {
                (predicates.clone(), Count::Events)
            }
            (CorrelationCondition::Threshold { predicates, field, .. }, CorrelationType::ValueCount) => {
                let name = field.as_deref().and_then(|f| f.first()).ok_or("value_count needs a condition field")?;
                let f = Field::parse(name).ok_or_else(|| format!("condition field `{name}` is not known"))?;
                request |= f.in_request_line();
                (predicates.clone(), Count::Values(f))
            }
            (CorrelationCondition::Threshold { .. }, CorrelationType::Temporal) => (Vec::new(), Count::Rules(None)),
            (CorrelationCondition::Extended(e), CorrelationType::Temporal) => {
                (Vec::new(), Count::Rules(Some(e.clone())))
            }
            (CorrelationCondition::Threshold { .. }, CorrelationType::TemporalOrdered) => (Vec::new(), Count::Sequence),
            (CorrelationCondition::Extended(_), CorrelationType::TemporalOrdered) => {
                return Err("temporal_ordered takes no condition expression: its rules fire in the order listed".into())
            }
            (_, t) => return Err(format!("type `{}` with this condition is not supported", t.as_str())),
        };
        let bounded = predicates
            .iter()
            .any(|(op, _)| matches!(op, ConditionOperator::Lt | ConditionOperator::Lte | ConditionOperator::Eq));
        let window = (c.timespan.seconds as Millis).saturating_mul(1000);
        Ok(SigmaCorrelation {
            title: c.title.clone(),
            level: c.level,
            tags: c.tags.clone(),
            count,
            rules,
            group_by,
            entity,
            window,
            predicates,
            bounded,
            request,
            // A group is forgotten once idle for a window (and the engine's idle timeout).
            state: KeyedState::new(limits.max_keys, window.max(limits.idle_timeout)),
        })
    }

    /// Which referenced rules `ev` matches, as bits.
    fn fired(&self, ev: &Event) -> u64 {
        let view = View(ev);
        let mut bits = 0u64;
        for (i, r) in self.rules.iter().enumerate() {
            if rsigma_eval::evaluate_rule(&r.compiled, &view).is_some() {
                bits |= 1 << i;
            }
        }
        bits
    }

    /// The group-by values of `ev`, `None` when it lacks one.
    fn group_values(&self, ev: &Event) -> Option<Vec<String>> {
        self.group_by.iter().map(|(_, f)| f.text(ev).map(|v| v.into_owned())).collect()
    }

    fn key_of(values: &[String]) -> String {
        values.join("\u{1f}")
    }

    fn holds(&self, n: u64) -> bool {
        self.predicates.iter().all(|(op, v)| match op {
            ConditionOperator::Lt => n < *v,
            ConditionOperator::Lte => n <= *v,
            ConditionOperator::Gt => n > *v,
            ConditionOperator::Gte => n >= *v,
            ConditionOperator::Eq => n == *v,
            ConditionOperator::Neq => n != *v,
        })
    }

    fn finding(&self, g: &Group, start: Millis, end: Millis, n: u64, ev: Option<&Event>) -> Option<Finding> {
        let (entity, ei) = match self.entity {
            Some((ei, kind)) => {
                let value = &g.group[ei];
                let id = match (kind, self.group_by[ei].1) {
                    (EntityKind::Token, Field::Username) => format!("user:{value}"),
                    _ => value.clone(),
                };
                (Entity { kind, id }, Some(ei))
            }
            None => (g.caller.clone()?, None),
        };
        let mut others: Vec<String> = (0..g.group.len())
            .filter(|i| Some(*i) != ei)
            .map(|i| format!("{}={}", self.group_by[i].0, g.group[i]))
            .collect();
        if others.is_empty() && ei.is_none() {
            // No group-by at all: one group, named so its alert ids are its own.
            others.push("(all)".into());
        }
        let mut evidence = super::rule_evidence(&self.title, self.level, &self.tags);
        let (type_name, what) = match &self.count {
            Count::Events => ("event_count", format!("{n} events")),
            Count::Values(f) => ("value_count", format!("{n} distinct {}", self.field_name(*f))),
            Count::Rules(_) => ("temporal", format!("{n} of {} rules", self.rules.len())),
            Count::Sequence => ("temporal_ordered", format!("{} rules in order", self.rules.len())),
        };
        evidence.insert("correlation_type".into(), type_name.into());
        evidence.insert(
            "group".into(),
            Value::Object(
                self.group_by.iter().zip(&g.group).map(|((n, _), v)| (n.clone(), Value::from(v.as_str()))).collect(),
            ),
        );
        evidence.insert("count".into(), n.into());
        evidence.insert("timespan".into(), human_duration(self.window).into());
        if let Count::Values(_) = self.count {
            let mut vs: Vec<&str> = g.values.iter().map(|(_, v)| v.as_str()).collect();
            vs.sort_unstable();
            vs.dedup();
            vs.truncate(20);
            evidence.insert("values".into(), vs.into_iter().map(Value::from).collect());
        }
        Some(Finding {
            entity,
            within: (!others.is_empty()).then(|| others.join(",")),
            client_id: ev.and_then(|e| e.client_id.as_deref().map(str::to_string)),
            client_id_source: ev.map(|e| e.client_id_source).unwrap_or_default(),
            token_fingerprint: ev.and_then(|e| e.token_fingerprint),
            window_start: start,
            window_end: end,
            summary: format!("{}: {what} in {} for {}", self.title, human_duration(self.window), g.group.join(" ")),
            evidence,
        })
    }

    /// Judges a bounded group's window, which is over, and opens the next.
    fn close(&mut self, key: &String, out: &mut Vec<Finding>) {
        let Some(g) = self.state.get(key) else { return };
        let Some(opened) = g.opened else { return };
        let n = self.measure(g);
        if self.holds(n) {
            out.extend(self.finding(g, opened, opened.saturating_add(self.window), n, None));
        }
        let g = self.state.get_mut(key).expect("present");
        *g = Group {
            group: std::mem::take(&mut g.group),
            last: vec![None; g.last.len()],
            caller: g.caller.take(),
            ..Group::default()
        };
    }

    fn field_name(&self, f: Field) -> &str {
        super::fields::NAMES.iter().find(|(_, x)| *x == f).map_or("values", |(n, _)| n)
    }

    /// The count the condition is judged on, over the group's window as it stands.
    fn measure(&self, g: &Group) -> u64 {
        match &self.count {
            Count::Events => g.times.len() as u64,
            Count::Values(_) => {
                let mut vs: Vec<&str> = g.values.iter().map(|(_, v)| v.as_str()).collect();
                vs.sort_unstable();
                vs.dedup();
                vs.len() as u64
            }
            Count::Rules(_) | Count::Sequence => g.last.iter().filter(|t| t.is_some()).count() as u64,
        }
    }

    /// Whether a temporal group is complete.
    fn complete(&self, g: &Group) -> bool {
        match &self.count {
            Count::Rules(None) | Count::Sequence => g.last.iter().all(Option::is_some),
            Count::Rules(Some(expr)) => {
                let fired = |name: &str| {
                    self.rules.iter().zip(&g.last).any(|(r, t)| t.is_some() && r.names.iter().any(|n| n == name))
                };
                eval_expr(expr, &fired)
            }
            _ => false,
        }
    }

    fn earliest(g: &Group) -> Option<Millis> {
        g.times.front().copied().or(g.values.front().map(|(t, _)| *t)).or(g.last.iter().flatten().min().copied())
    }
}

/// A temporal condition over which rules fired (`rule_a and not rule_b`).
fn eval_expr(e: &ConditionExpr, fired: &dyn Fn(&str) -> bool) -> bool {
    match e {
        ConditionExpr::And(xs) => xs.iter().all(|x| eval_expr(x, fired)),
        ConditionExpr::Or(xs) => xs.iter().any(|x| eval_expr(x, fired)),
        ConditionExpr::Not(x) => !eval_expr(x, fired),
        ConditionExpr::Identifier(n) => fired(n),
        ConditionExpr::Selector { .. } => false,
    }
}

impl Detector for SigmaCorrelation {
    fn on_event(&mut self, ev: &Event, out: &mut Vec<Finding>) {
        let bits = self.fired(ev);
        if bits == 0 {
            return;
        }
        let Some(values) = self.group_values(ev) else { return };
        let key = Self::key_of(&values);
        let t = ev.ts;
        let window = self.window;
        let n_rules = self.rules.len();
        let value = match self.count {
            Count::Values(f) => match f.text(ev) {
                Some(v) => Some(v.into_owned()),
                None => return,
            },
            _ => None,
        };
        let bounded = self.bounded;
        if bounded {
            // A window that ended since the last watermark tick is judged before this event.
            if self.state.get(&key).is_some_and(|g| g.opened.is_some_and(|o| o.saturating_add(window) <= t)) {
                self.close(&key, out);
            }
        }
        let count = self.count.clone();
        let caller = if self.entity.is_none() { super::detection::caller(ev).map(|(e, _)| e) } else { None };
        let g = self.state.entry(key.as_str(), t, Group::default);
        if g.last.len() != n_rules {
            g.group = values;
            g.last = vec![None; n_rules];
        }
        if caller.is_some() {
            g.caller = caller;
        }
        if bounded {
            // A window opens at the group's first event (an ended one was closed above).
            g.opened.get_or_insert(t);
        } else {
            let from = t.saturating_sub(window);
            while g.times.front().is_some_and(|x| *x <= from) {
                g.times.pop_front();
            }
            while g.values.front().is_some_and(|(x, _)| *x <= from) {
                g.values.pop_front();
            }
            for l in g.last.iter_mut() {
                if l.is_some_and(|x| x <= from) {
                    *l = None;
                }
            }
        }
        match count {
            Count::Events => g.times.push_back(t),
            Count::Values(_) => {
                let v = value.expect("read above");
                // Keep one entry per value, at its latest time.
                g.values.retain(|(_, x)| *x != v);
                g.values.push_back((t, v));
            }
            Count::Rules(_) => {
                for (i, l) in g.last.iter_mut().enumerate() {
                    if bits & (1 << i) != 0 {
                        *l = Some(t);
                    }
                }
            }
            Count::Sequence => {
                // From the last step down, so one event is never two steps of one chain.
                for i in (0..n_rules).rev() {
                    if bits & (1 << i) == 0 {
                        continue;
                    }
                    let start = if i == 0 { Some(t) } else { g.last[i - 1] };
                    if let Some(s) = start {
                        g.last[i] = Some(g.last[i].map_or(s, |x| x.max(s)));
                    }
                }
            }
        }
        if bounded {
            return;
        }
        let g = self.state.get(&key).expect("entered above");
        let (fire, n) = match self.count {
            Count::Events | Count::Values(_) => {
                let n = self.measure(g);
                (self.holds(n), n)
            }
            Count::Rules(_) | Count::Sequence => (self.complete(g), self.measure(g)),
        };
        if fire {
            let start = match self.count {
                Count::Sequence => g.last[0].unwrap_or(t),
                _ => Self::earliest(g).unwrap_or(t),
            };
            out.extend(self.finding(g, start, t, n, Some(ev)));
            let g = self.state.get_mut(&key).expect("entered above");
            g.times.clear();
            g.values.clear();
            g.last.iter_mut().for_each(|l| *l = None);
        }
    }

    fn shard_key(&self, ev: &Event, shard: Shard) -> Option<String> {
        if shard != Shard::Group || self.fired(ev) == 0 {
            return None;
        }
        self.group_values(ev).map(|v| Self::key_of(&v))
    }

    fn on_watermark(&mut self, wm: Millis, out: &mut Vec<Finding>) {
        if self.bounded {
            let window = self.window;
            let mut due: Vec<String> = Vec::new();
            for (k, g) in self.state.iter_mut() {
                if g.opened.is_some_and(|o| o.saturating_add(window) <= wm) {
                    due.push(k.clone());
                }
            }
            due.sort_unstable();
            for k in due {
                self.close(&k, out);
            }
        }
        self.state.sweep(wm);
    }

    fn stats(&self) -> StateStats {
        self.state.stats()
    }

    fn reads_request(&self) -> bool {
        self.request
    }
}

#[cfg(test)]
mod tests_support {
    use super::*;

    /// Three detection rules (`recon`: a 404 under /admin, `login`: POST /login answered 200,
    /// `export`: GET /export) and one correlation over them.
    pub(super) fn correlation(body: &str) -> SigmaCorrelation {
        let yaml = format!(
            "title: recon\nname: recon\nlogsource: {{category: webserver}}\ndetection:\n  s: {{cs-uri-stem|startswith: /admin, sc-status: 404}}\n  condition: s\n---\n\
             title: login\nname: login\nlogsource: {{category: webserver}}\ndetection:\n  s: {{cs-method: POST, cs-uri-stem: /login, sc-status: 200}}\n  condition: s\n---\n\
             title: export\nname: export\nlogsource: {{category: webserver}}\ndetection:\n  s: {{cs-method: GET, cs-uri-stem: /export}}\n  condition: s\n---\n\
             title: chain\nid: c-1\ncorrelation:\n{body}"
        );
        let c = rsigma_parser::parse_sigma_yaml(&yaml).unwrap();
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        SigmaCorrelation::new(&c.correlations[0], &c.rules, Limits::default()).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::correlation;
    use super::*;
    use crate::detectors::testing::{ev, run};

    const IP: &str = "192.0.2.7";

    fn recon(t: Millis) -> Event {
        ev(t).ip(IP).get("/admin/x").status(404).build()
    }
    fn login(t: Millis) -> Event {
        ev(t).ip(IP).post("/login").status(200).build()
    }
    fn export(t: Millis) -> Event {
        ev(t).ip(IP).get("/export").build()
    }

    #[test]
    fn temporal_needs_every_rule_within_the_timespan_in_any_order() {
        let body = "  type: temporal\n  rules: [recon, login, export]\n  group-by: [c-ip]\n  timespan: 10m\n";
        let mut c = correlation(body);
        let f = run(&mut c, &[export(0), login(60_000), recon(120_000)]);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].window_start, f[0].window_end), (0, 120_000));
        assert_eq!(f[0].entity.id, IP);
        // Too far apart: the export has left the window when the recon comes.
        let mut c = correlation(body);
        assert!(run(&mut c, &[export(0), login(60_000), recon(660_000)]).is_empty());
    }

    #[test]
    fn temporal_ordered_needs_the_order_listed() {
        let body = "  type: temporal_ordered\n  rules: [recon, login, export]\n  group-by: [c-ip]\n  timespan: 10m\n";
        let mut c = correlation(body);
        assert!(run(&mut c, &[export(0), login(60_000), recon(120_000)]).is_empty(), "wrong order");
        let mut c = correlation(body);
        let f = run(&mut c, &[recon(0), recon(30_000), login(60_000), export(120_000)]);
        assert_eq!(f.len(), 1);
        // The latest recon that starts the chain.
        assert_eq!(f[0].window_start, 30_000);
        assert_eq!(f[0].evidence["correlation_type"], "temporal_ordered");
    }

    #[test]
    fn temporal_with_an_expression_takes_it() {
        let body = "  type: temporal\n  rules: [recon, login, export]\n  group-by: [c-ip]\n  timespan: 10m\n  condition: recon and not login\n";
        let mut c = correlation(body);
        assert_eq!(run(&mut c, &[recon(0)]).len(), 1);
        let mut c = correlation(body);
        assert!(run(&mut c, &[login(0), recon(10_000)]).is_empty());
    }

    #[test]
    fn an_upper_bound_is_judged_when_the_window_is_over() {
        // Exactly 2 exports in 5 minutes: known only at the window's end.
        let body =
            "  type: event_count\n  rules: [export]\n  group-by: [c-ip]\n  timespan: 5m\n  condition:\n    eq: 2\n";
        let mut c = correlation(body);
        let mut out = Vec::new();
        c.on_event(&export(0), &mut out);
        c.on_event(&export(60_000), &mut out);
        c.on_watermark(299_999, &mut out);
        assert!(out.is_empty(), "the window is still open");
        c.on_watermark(300_000, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].window_start, out[0].window_end), (0, 300_000));
        // Three in the next window: no alert; the first event after a window's end opens the
        // next one even before a watermark closes it.
        let mut out = Vec::new();
        for t in [400_000, 500_000, 600_000] {
            c.on_event(&export(t), &mut out);
        }
        c.on_event(&export(800_000), &mut out);
        assert!(out.is_empty(), "{out:?}");
        c.on_watermark(1_100_000, &mut out);
        assert!(out.is_empty(), "one export in the window from 800 s");
    }

    #[test]
    fn more_than_one_group_by_field_keeps_groups_apart() {
        let body = "  type: event_count\n  rules: [export]\n  group-by: [c-ip, cs-host]\n  timespan: 5m\n  condition:\n    gte: 2\n";
        let mut c = correlation(body);
        let on = |t: Millis, host: &str| Event { host: Some(host.into()), ..export(t) };
        let f = run(&mut c, &[on(0, "a.example"), on(1_000, "b.example"), on(2_000, "b.example")]);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].within.as_deref(), Some("cs-host=b.example"));
        assert!(c.reads_request(), "cs-host travels with the repartition record");
        assert_eq!(c.shard_key(&on(0, "a.example"), Shard::Group).as_deref(), Some("192.0.2.7\u{1f}a.example"));
        assert_eq!(c.shard_key(&login(0), Shard::Group), None, "an event no rule matches stays home");
    }
}

#[cfg(test)]
mod any_group_by {
    use super::tests_support::*;
    use crate::detectors::testing::{ev, run};
    use crate::event::{EntityKind, Event};

    #[test]
    fn a_group_by_naming_no_entity_alerts_on_the_caller_and_keeps_groups_apart() {
        let mut c = correlation(
            "  type: event_count\n  rules: [export]\n  group-by: [cs-host]\n  timespan: 5m\n  condition:\n    gte: 3\n",
        );
        let on = |t, ip: &str, host: &str| Event { host: Some(host.into()), ..ev(t).ip(ip).get("/export").build() };
        let f = run(
            &mut c,
            &[
                on(0, "192.0.2.1", "a"),
                on(1_000, "192.0.2.2", "a"),
                on(1_500, "192.0.2.9", "b"),
                on(2_000, "192.0.2.3", "a"),
            ],
        );
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].entity.kind, f[0].entity.id.as_str()), (EntityKind::SourceIp, "192.0.2.3"));
        assert_eq!(f[0].within.as_deref(), Some("cs-host=a"));
        // No group-by at all: every matching event counts together.
        let mut c = correlation("  type: event_count\n  rules: [export]\n  timespan: 5m\n  condition:\n    gte: 3\n");
        let f = run(&mut c, &[on(0, "192.0.2.1", "a"), on(1_000, "192.0.2.2", "b"), on(2_000, "192.0.2.3", "c")]);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].within.as_deref(), Some("(all)"));
    }
}
