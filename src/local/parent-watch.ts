/**
 * Preloaded (`node --import`) into every child the Supervisor starts. A supervisor that is SIGKILLed or crashes
 * cannot stop its children, and Node has no PR_SET_PDEATHSIG; so each child notices that it has been re-parented
 * (its ppid changes to init or a subreaper) and stops itself with SIGTERM, running its own graceful shutdown.
 * The check is a ppid read every 500 ms on an unref'd timer: it never keeps a child alive and costs nothing on the
 * request path.
 */
const parent = process.ppid;
const timer = setInterval(() => {
  if (process.ppid === parent) return;
  clearInterval(timer);
  process.kill(process.pid, "SIGTERM");
}, 500);
timer.unref();
