/**
 * Targets that need exactly the same files form one class; each class gets its own
 * relay tree. Targets needing nothing belong to no class.
 */
export interface TransferClass<T> {
  /** source indices of the files this class needs, ascending */
  files: number[]
  members: T[]
}

export function classify<T> (needs: ReadonlyArray<{ target: T, files: readonly number[] }>): Array<TransferClass<T>> {
  const byKey = new Map<string, TransferClass<T>>()
  for (const { target, files } of needs) {
    if (files.length === 0) continue
    const sorted = [...files].sort((a, b) => a - b)
    const key = sorted.join(',')
    let c = byKey.get(key)
    if (c == null) {
      c = { files: sorted, members: [] }
      byKey.set(key, c)
    }
    c.members.push(target)
  }
  return [...byKey.values()]
}
