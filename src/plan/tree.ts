/**
 * The relay tree of one class, rooted at the source. Members are laid out breadth-first
 * in a complete d-ary tree: node k of [root, ...members] hangs under node ⌊(k-1)/d⌋, so with
 * fanout 1 the tree is a chain source → m0 → m1 → …, which uses every uplink once and
 * comes closest to the S/B bound on equal links.
 */
export interface RelayTree<T> {
  root: T
  /** parent of every member */
  parent: Map<T, T>
  /** children of the root and of every member (empty arrays for leaves) */
  children: Map<T, T[]>
}

export class PlanError extends Error {
  override name = 'PlanError'
}

export function planTree<T> (root: T, members: readonly T[], fanout: number): RelayTree<T> {
  if (!Number.isInteger(fanout) || fanout < 1) throw new PlanError(`fanout must be a positive integer, got ${fanout}`)
  if (new Set(members).size !== members.length || members.includes(root)) throw new PlanError('members must be unique and must not include the root')
  const nodes = [root, ...members]
  const parent = new Map<T, T>()
  const children = new Map<T, T[]>(nodes.map(n => [n, []]))
  for (let k = 1; k < nodes.length; k++) {
    const p = nodes[Math.floor((k - 1) / fanout)]
    parent.set(nodes[k], p)
    children.get(p)!.push(nodes[k])
  }
  return { root, parent, children }
}

/** Every node below `node` (not including it). */
export function subtreeOf<T> (tree: RelayTree<T>, node: T): T[] {
  const out: T[] = []
  const stack = [...(tree.children.get(node) ?? [])]
  while (stack.length > 0) {
    const n = stack.pop()!
    out.push(n)
    stack.push(...(tree.children.get(n) ?? []))
  }
  return out
}
