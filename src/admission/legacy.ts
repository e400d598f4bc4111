/**
 * Admission without flow control (GIE's legacy mode, feature gate `flowControl` off): Critical always passes,
 * sheddable traffic is rejected while the candidates are saturated, everything else is admitted at once.
 */
import type { Endpoint } from "../datastore/types.js";
import type { SaturationDetector } from "../scheduling/types.js";
import { shouldShed } from "./shedding.js";
import type { Admission, AdmissionRequest, AdmissionTicket } from "./types.js";

const NOOP_TICKET: AdmissionTicket = { release() {} };

export interface SheddingAdmissionOptions {
  readonly detector: SaturationDetector;
  /** Called for every shed request (metrics). */
  readonly onShed?: (request: AdmissionRequest, reason: string) => void;
  readonly now?: () => number;
}

export class SheddingAdmission implements Admission {
  readonly #o: SheddingAdmissionOptions;
  readonly #now: () => number;

  constructor(options: SheddingAdmissionOptions) {
    this.#o = options;
    this.#now = options.now ?? (() => performance.now());
  }

  admit(request: AdmissionRequest, candidates: () => readonly Endpoint[]): AdmissionTicket {
    // Critical never reads saturation: it is admitted even when every pod is busy.
    if (request.criticality === "Critical") return NOOP_TICKET;
    const saturated = this.#o.detector.isSaturated(candidates(), this.#now());
    const err = shouldShed(request, saturated);
    if (err) {
      this.#o.onShed?.(request, "saturated");
      throw err;
    }
    return NOOP_TICKET;
  }
}
