/**
 * A strict-enough XML well-formedness check for the benchmark's SVGs (no dependency): one root element, every tag
 * closed in order, quoted attributes, no stray "<" or bare "&" in text. Returns the element names in document order.
 */
export function parseXmlElements(xml: string): string[] {
  const names: string[] = [];
  const stack: string[] = [];
  let i = 0;
  let roots = 0;
  const text = (s: string) => {
    if (/&(?!(amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);)/.test(s)) throw new Error(`bare & in text: ${s.slice(0, 40)}`);
    if (stack.length === 0 && s.trim() !== "") throw new Error(`text outside the root element: ${s.slice(0, 40)}`);
  };
  while (i < xml.length) {
    const lt = xml.indexOf("<", i);
    if (lt === -1) {
      text(xml.slice(i));
      break;
    }
    text(xml.slice(i, lt));
    const gt = xml.indexOf(">", lt);
    if (gt === -1) throw new Error("unterminated tag");
    const tag = xml.slice(lt + 1, gt);
    i = gt + 1;
    if (tag.startsWith("?") || tag.startsWith("!--")) continue;
    if (tag.startsWith("/")) {
      const name = tag.slice(1).trim();
      const open = stack.pop();
      if (open !== name) throw new Error(`</${name}> closes <${open}>`);
      continue;
    }
    const m = /^([A-Za-z_][\w:.-]*)((?:\s+[\w:.-]+="[^"<]*")*)\s*(\/?)$/.exec(tag);
    if (!m) throw new Error(`malformed tag <${tag.slice(0, 60)}>`);
    const name = m[1]!;
    if (stack.length === 0) roots++;
    if (roots > 1) throw new Error("more than one root element");
    names.push(name);
    if (m[3] !== "/") stack.push(name);
  }
  if (stack.length > 0) throw new Error(`unclosed <${stack.join("><")}>`);
  if (roots !== 1) throw new Error("no root element");
  return names;
}
