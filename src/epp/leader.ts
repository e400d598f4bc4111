/**
 * Assembly step 6: active-passive high availability, as GIE (`--ha-enable-leader-election`,
 * docs/kubernetes.md): a coordination.k8s.io Lease per pool; only the leader reports ready, writes InferenceModel
 * status and patches the autoscale target.
 */
import type { HealthServer } from "../extproc/health.js";
import type { Logger } from "../observability/logger.js";
import type { KubernetesSource } from "../sources/kubernetes.js";
import { LeaderElector, leaseNameFor } from "../sources/leader.js";
import type { EppFlagValues } from "./flags.js";
import type { PoolChoice } from "./settings.js";

/**
 * Whether this replica leads. Built first so the steps before it (admission's autoscale loop, the Kubernetes
 * source's status writes) can ask; the elector itself starts last, once the servers are up, and until then the
 * answer is no.
 */
export class Leadership {
  #elector: LeaderElector | undefined;

  readonly isLeader = (): boolean => this.#elector?.isLeader === true;

  start(o: {
    f: EppFlagValues;
    pool: PoolChoice;
    health: HealthServer;
    kubernetes: KubernetesSource | undefined;
    logger: Logger;
  }): void {
    const { logger } = o;
    this.#elector = new LeaderElector({
      ...(o.f.kubeconfig ? { kubeconfig: o.f.kubeconfig } : {}),
      namespace: o.pool.namespace,
      leaseName: leaseNameFor(o.pool.namespace, o.pool.poolName),
      logger,
      onStartedLeading: () => {
        logger.info("became leader");
        o.health.setLeader(true);
        o.kubernetes?.resync();
      },
      onStoppedLeading: () => {
        logger.warn("lost leadership");
        o.health.setLeader(false);
      },
    });
    this.#elector.start();
  }

  async stop(): Promise<void> {
    await this.#elector?.stop();
  }
}
