/**
 * Flow-control policies as registered plugins (src/common/registry.ts): the fairness, ordering and usage-limit
 * policies GIE's flowControl section references by type (`fairnessPolicyRef`, `orderingPolicyRef`,
 * `usageLimitPolicyPluginRef`, docs/design/scheduling.md §7). Registering them (a) lets a stock GIE config list them
 * under `plugins:` and (b) makes every reference checked against the registry, by kind, with the field path.
 * The queue implements two orders among tenants (round-robin, global-strict), FCFS within a queue and the static
 * usage limit; a registered policy selects one of those.
 */
import type { Plugin, PluginFactory, RegisterOptions } from "../common/registry.js";
import { pluginRegistration, registeredPluginTypes, registerPluginType } from "../common/registry.js";

/** Order among the tenants of one priority band (flow-control.ts). */
export type FairnessPolicy = "round-robin" | "global-strict";

export interface FairnessPolicyPlugin extends Plugin {
  readonly fairness: FairnessPolicy;
}

/** The kinds a flowControl section references. */
export type FlowControlPolicyKind = "fairness-policy" | "ordering-policy" | "usage-limit-policy";

/**
 * Registers a flow-control policy type. Throws on a duplicate type unless `replace` is set. A fairness policy must
 * produce a FairnessPolicyPlugin: the queue orders tenants by its `fairness`.
 */
export function registerFlowControlPolicy(
  kind: "fairness-policy",
  type: string,
  factory: PluginFactory<FairnessPolicyPlugin>,
  options?: RegisterOptions,
): void;
export function registerFlowControlPolicy(
  kind: "ordering-policy" | "usage-limit-policy",
  type: string,
  factory: PluginFactory,
  options?: RegisterOptions,
): void;
export function registerFlowControlPolicy(
  kind: FlowControlPolicyKind,
  type: string,
  factory: PluginFactory,
  options: RegisterOptions = {},
): void {
  registerPluginType(kind, type, factory, options);
}

const fairness =
  (fairness: FairnessPolicy): PluginFactory<FairnessPolicyPlugin> =>
  (name, _params) => ({ typedName: { type: `${fairness}-fairness-policy`, name }, fairness });
const plain =
  (type: string): PluginFactory =>
  (name) => ({ typedName: { type, name } });

const BUILTINS: readonly [FlowControlPolicyKind, string, PluginFactory][] = [
  ["fairness-policy", "round-robin-fairness-policy", fairness("round-robin")],
  ["fairness-policy", "global-strict-fairness-policy", fairness("global-strict")],
  ["ordering-policy", "fcfs-ordering-policy", plain("fcfs-ordering-policy")],
  ["usage-limit-policy", "static-usage-limit-policy", plain("static-usage-limit-policy")],
];

let registered = false;

/** Registers the built-in policies once; a type registered earlier (out-of-tree) keeps its registration. */
export function registerFlowControlPolicies(): void {
  if (registered) return;
  registered = true;
  for (const [kind, type, factory] of BUILTINS) if (!pluginRegistration(type)) registerPluginType(kind, type, factory);
}

/** The registered types a reference of `kind` may name, sorted. */
export function policyTypes(kind: FlowControlPolicyKind): readonly string[] {
  return registeredPluginTypes(kind);
}

/** An instance of the registered policy `type` (the caller has checked its kind). */
export function policyInstance(type: string): Plugin {
  return pluginRegistration(type)!.factory(type, undefined, undefined);
}

export function isFairnessPolicy(p: Plugin): p is FairnessPolicyPlugin {
  const f = (p as Partial<FairnessPolicyPlugin>).fairness;
  return f === "round-robin" || f === "global-strict";
}
