/**
 * The director's view of the pool: only what one request needs, declared on the consumer side (as GIE's director
 * depends on its own narrow `Datastore` interface, docs/design/scheduling.md §1), so the director can be tested with
 * a small fake and the datastore can change behind it. `Datastore` (src/datastore/datastore.ts) satisfies it
 * structurally.
 */
import type { ResolvedRewrite } from "../datastore/datastore.js";
import type { Endpoint, ModelSpec, ObjectiveSpec } from "../datastore/types.js";

export interface PoolView {
  /** The InferenceModel (criticality, weighted target split) serving a client model name. */
  model(modelName: string): ModelSpec | undefined;
  /** The InferenceObjective named by the objective header (its priority). */
  objective(name: string): ObjectiveSpec | undefined;
  /** The InferenceModelRewrite matching a target model, with its weighted targets. */
  resolveRewrite(model: string): ResolvedRewrite | undefined;
  /** Every ready endpoint of the pool: the candidates before the subset hint. */
  endpoints(): readonly Endpoint[];
}
