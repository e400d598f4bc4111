// TEMPORARY: replaced by the real command during this session.
export async function run(_argv: readonly string[]): Promise<number | undefined> {
  throw new Error("switchyard bench: not built yet");
}
