/**
 * Legacy (non-flow-control) shedding (docs/design/scheduling.md §7), combining both GIE eras so either kind of
 * manifest works:
 * - `Critical` is never shed (v0.5 criticality; it bypasses the saturation check entirely);
 * - `Sheddable` (the resource layer maps the "BestEffort" alias onto it) or `priority < 0` (v1.x objectives) is
 *   shed while the pool is saturated;
 * - everything else (`Standard`, priority ≥ 0) is admitted: GIE v1.x sheds only negative priorities.
 * `saturated` is SaturationDetector.isSaturated(candidates, now), evaluated by the caller.
 */
import { SwitchyardError } from "../common/errors.js";
import type { Criticality } from "../datastore/types.js";

/** GIE's 429 body text for a shed request (exact). */
export const SHED_MESSAGE = "system saturated, sheddable request dropped";

export interface SheddingInput {
  readonly criticality: Criticality;
  readonly priority: number;
}

/** Returns the SY_SHED error to reject with, or undefined to admit. */
export function shouldShed(request: SheddingInput, saturated: boolean): SwitchyardError | undefined {
  if (!saturated || request.criticality === "Critical") return undefined;
  if (request.criticality === "Sheddable" || request.priority < 0) return new SwitchyardError("SY_SHED", SHED_MESSAGE);
  return undefined;
}
