/**
 * Reads deploy/dashboards/switchyard.json and deploy/alerts/switchyard-rules.yaml the way Grafana and Prometheus
 * would, for the static checks and the real-Prometheus e2e test.
 */
import { readFileSync } from "node:fs";
import { parse } from "yaml";

const root = new URL("../../", import.meta.url);
export const DASHBOARD_PATH = new URL("deploy/dashboards/switchyard.json", root);
export const RULES_PATH = new URL("deploy/alerts/switchyard-rules.yaml", root);

export interface DashboardQuery {
  readonly panel: string;
  readonly refId: string;
  /** As written in the dashboard. */
  readonly raw: string;
  /** With every template variable substituted, ready for /api/v1/query. */
  readonly expr: string;
}

interface Panel {
  readonly type: string;
  readonly title: string;
  readonly datasource?: { readonly type?: string; readonly uid?: string };
  readonly targets?: readonly { readonly refId: string; readonly expr?: string; readonly datasource?: unknown }[];
  readonly panels?: readonly Panel[];
  readonly options?: { readonly content?: string };
}

export interface Dashboard {
  readonly title: string;
  readonly uid: string;
  readonly panels: readonly Panel[];
  readonly templating: {
    readonly list: readonly {
      readonly name: string;
      readonly type: string;
      readonly allValue?: string;
      readonly query?: unknown;
    }[];
  };
  readonly __inputs?: readonly { readonly name: string; readonly pluginId: string }[];
}

export function loadDashboard(): Dashboard {
  return JSON.parse(readFileSync(DASHBOARD_PATH, "utf8")) as Dashboard;
}

/** Every panel, rows' nested panels included. */
export function allPanels(d: Dashboard): Panel[] {
  return d.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
}

/**
 * Grafana's built-in interval variables get fixed values; dashboard variables get their "All" value (a regex
 * matching everything). Anything left over is an unknown variable and is reported by the caller.
 */
export function substitute(expr: string, d: Dashboard, rateInterval = "30s"): string {
  const builtins: [string, string][] = [
    ["__rate_interval", rateInterval],
    ["__interval", "5s"],
    ["__range", "5m"],
  ];
  let out = expr;
  for (const [name, value] of builtins) out = out.replaceAll(`\${${name}}`, value).replaceAll(`$${name}`, value);
  // Longest names first, so `$model_name` is not read as `$model` + `_name`.
  const vars = [...d.templating.list].sort((a, b) => b.name.length - a.name.length);
  for (const v of vars) {
    if (v.type === "datasource") continue;
    const value = v.allValue ?? ".*";
    out = out.replaceAll(`\${${v.name}}`, value).replaceAll(`$${v.name}`, value);
  }
  return out;
}

export function dashboardQueries(d: Dashboard = loadDashboard()): DashboardQuery[] {
  const out: DashboardQuery[] = [];
  for (const p of allPanels(d))
    for (const t of p.targets ?? [])
      if (t.expr !== undefined) out.push({ panel: p.title, refId: t.refId, raw: t.expr, expr: substitute(t.expr, d) });
  return out;
}

export interface AlertRule {
  readonly group: string;
  readonly alert: string;
  readonly expr: string;
  readonly for?: string;
  readonly labels?: Readonly<Record<string, string>>;
  readonly annotations?: Readonly<Record<string, string>>;
}

export interface PrometheusRule {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: { readonly name: string };
  readonly spec: {
    readonly groups: readonly { readonly name: string; readonly rules: readonly Omit<AlertRule, "group">[] }[];
  };
}

export function loadPrometheusRule(): PrometheusRule {
  return parse(readFileSync(RULES_PATH, "utf8")) as PrometheusRule;
}

export function alertRules(rule: PrometheusRule = loadPrometheusRule()): AlertRule[] {
  return rule.spec.groups.flatMap((g) => g.rules.map((r) => ({ ...r, group: g.name, expr: r.expr.trim() })));
}

/**
 * An alert expression is written `<signal> <op> <threshold>`: returns the signal, so a test can check it has data
 * even when the threshold is not crossed. Undefined when the expression has no trailing scalar comparison.
 */
export function alertSignal(expr: string): string | undefined {
  const m = /^([\s\S]*?)\s*(?:>=|<=|==|!=|>|<)\s*(?:bool\s+)?-?[0-9.]+(?:e[+-]?\d+)?\s*$/.exec(expr.trim());
  return m?.[1]?.trim() || undefined;
}

/** Metric names an expression reads, minus functions, keywords, label names, durations and numbers. */
export function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, "")
    .replace(/\{[^}]*\}/g, "")
    .replace(/\[[^\]]*\]/g, "")
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, "")
    .replace(/(?<![\w:])\d+(?:\.\d+)?(?:e[+-]?\d+)?/gi, "");
  const names = new Set<string>();
  for (const m of bare.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?/g)) {
    const [, name, call] = m;
    if (call !== undefined || /^(?:and|or|unless|bool|offset)$/.test(name!)) continue;
    names.add(name!);
  }
  return [...names];
}
