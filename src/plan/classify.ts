/**
 * Targets that need exactly the same files (and resume the same files at the same
 * offsets) form one class; each class gets its own relay tree, since every member must
 * accept the same frames. Targets needing nothing belong to no class.
 */
export interface TransferClass<T> {
  /** source indices of the files this class needs, ascending */
  files: number[]
  /** files the class continues from a kept part: index → offset */
  offsets: Map<number, number>
  members: T[]
}

export function classify<T> (needs: ReadonlyArray<{ target: T, files: readonly number[], resume?: ReadonlyArray<readonly [number, number]> }>): Array<TransferClass<T>> {
  const byKey = new Map<string, TransferClass<T>>()
  for (const { target, files, resume } of needs) {
    if (files.length === 0) continue
    const sorted = [...files].sort((a, b) => a - b)
    const offsets = [...(resume ?? [])].sort((a, b) => a[0] - b[0])
    const key = sorted.join(',') + '|' + offsets.map(([i, o]) => `${i}@${o}`).join(',')
    let c = byKey.get(key)
    if (c == null) {
      c = { files: sorted, offsets: new Map(offsets.map(([i, o]) => [i, o])), members: [] }
      byKey.set(key, c)
    }
    c.members.push(target)
  }
  return [...byKey.values()]
}

/**
 * Each member for which `alone` holds, in a class with others, goes into a class of its own
 * (same files, same offsets): a known laggard (src/home/laggards.ts) gets its own tree and
 * sender, so it paces nobody. Classes keep their order; split-off classes follow their origin.
 */
export function splitOut<T> (classes: ReadonlyArray<TransferClass<T>>, alone: (member: T) => boolean): Array<TransferClass<T>> {
  return classes.flatMap((c) => {
    const apart = c.members.filter(alone)
    if (apart.length === 0 || c.members.length === 1) return [c]
    const rest = c.members.filter(m => !alone(m))
    const copy = (members: T[]): TransferClass<T> => ({ files: c.files, offsets: new Map(c.offsets), members })
    return [...(rest.length > 0 ? [copy(rest)] : []), ...apart.map(m => copy([m]))]
  })
}
