import { test, describe } from 'node:test'
import assert from 'node:assert/strict'
import { classify, splitOut } from '../../src/plan/classify.js'
import { planTree, subtreeOf, PlanError, type RelayTree } from '../../src/plan/tree.js'

describe('splitOut', () => {
  const base = () => classify([
    { target: 'A', files: [1, 2] }, { target: 'S', files: [1, 2] }, { target: 'B', files: [1, 2] },
    { target: 'C', files: [3], resume: [[3, 100]] }, { target: 'T', files: [4] }
  ])
  test('a member apart in a class with others gets a class of its own, with the same files and offsets', () => {
    const out = splitOut(base(), m => m === 'S' || m === 'T')
    assert.deepEqual(out.map(c => c.members), [['A', 'B'], ['S'], ['C'], ['T']])
    assert.deepEqual(out[1].files, [1, 2])
    assert.deepEqual(out[0].files, [1, 2])
    const c3 = splitOut(classify([{ target: 'C', files: [3], resume: [[3, 100]] }, { target: 'S', files: [3], resume: [[3, 100]] }]), m => m === 'S')
    assert.deepEqual(c3.map(c => [c.members, [...c.offsets]]), [[['C'], [[3, 100]]], [['S'], [[3, 100]]]])
    assert.notEqual(c3[0].offsets, c3[1].offsets, 'each class owns its offsets')
  })
  test('a class of members all apart becomes one class each; nobody apart changes nothing', () => {
    assert.deepEqual(splitOut(base(), m => m !== 'T').map(c => c.members), [['A'], ['S'], ['B'], ['C'], ['T']])
    const same = base()
    assert.deepEqual(splitOut(same, () => false), same)
  })
})

describe('classify', () => {
  test('identical needs are grouped regardless of order; empty needs are excluded', () => {
    const classes = classify([
      { target: 'A', files: [3, 1, 2] },
      { target: 'B', files: [] },
      { target: 'C', files: [1, 2, 3] },
      { target: 'D', files: [1, 2] },
      { target: 'E', files: [2, 3, 1] }
    ])
    assert.deepEqual(classes, [
      { files: [1, 2, 3], offsets: new Map(), members: ['A', 'C', 'E'] },
      { files: [1, 2], offsets: new Map(), members: ['D'] }
    ])
  })

  test('files are sorted numerically, not as strings', () => {
    const classes = classify([{ target: 'A', files: [10, 9, 100] }, { target: 'B', files: [100, 9, 10] }])
    assert.deepEqual(classes, [{ files: [9, 10, 100], offsets: new Map(), members: ['A', 'B'] }])
  })

  test('different sets with the same digits are different classes', () => {
    const classes = classify([{ target: 'A', files: [1, 23] }, { target: 'B', files: [12, 3] }, { target: 'C', files: [123] }])
    assert.equal(classes.length, 3)
    assert.deepEqual(classes.map(c => c.members), [['A'], ['B'], ['C']])
  })

  test('the same files resumed at different offsets are different classes', () => {
    const classes = classify([
      { target: 'A', files: [1, 2], resume: [[2, 100]] },
      { target: 'B', files: [2, 1], resume: [[2, 100]] },
      { target: 'C', files: [1, 2], resume: [[2, 50]] },
      { target: 'D', files: [1, 2] }
    ])
    assert.deepEqual(classes.map(c => c.members), [['A', 'B'], ['C'], ['D']])
    assert.deepEqual([...classes[0].offsets], [[2, 100]])
    assert.deepEqual([...classes[2].offsets], [])
  })

  test('nothing needed → no classes; inputs are not mutated', () => {
    assert.deepEqual(classify([]), [])
    assert.deepEqual(classify([{ target: 1, files: [] }, { target: 2, files: [] }]), [])
    const files = [5, 4]
    const classes = classify([{ target: 'x', files }])
    assert.deepEqual(files, [5, 4])
    assert.notEqual(classes[0].files, files)
  })

  test('works with object targets (identity, not equality)', () => {
    const a = { name: 'a' }
    const b = { name: 'b' }
    const classes = classify([{ target: a, files: [0] }, { target: b, files: [0] }])
    assert.equal(classes.length, 1)
    assert.equal(classes[0].members[0], a)
    assert.equal(classes[0].members[1], b)
  })
})

function checkTreeInvariants<T> (tree: RelayTree<T>, root: T, members: readonly T[]): void {
  assert.equal(tree.root, root)
  assert.ok(!tree.parent.has(root), 'the root has no parent')
  assert.equal(tree.parent.size, members.length)
  const seen = new Map<T, number>()
  for (const [p, kids] of tree.children) {
    for (const k of kids) {
      seen.set(k, (seen.get(k) ?? 0) + 1)
      assert.equal(tree.parent.get(k), p, 'children and parent agree')
    }
  }
  for (const m of members) {
    assert.equal(seen.get(m), 1, `member ${String(m)} must have exactly one parent`)
    assert.ok(tree.children.has(m), 'every member has a children entry')
  }
  assert.ok(!seen.has(root))
  // every member reaches the root
  for (const m of members) {
    let n: T = m
    let steps = 0
    while (n !== root) { n = tree.parent.get(n)!; assert.ok(++steps <= members.length, 'no cycles') }
  }
  assert.deepEqual(new Set(subtreeOf(tree, root)), new Set(members))
}

describe('planTree', () => {
  const members = (n: number): string[] => Array.from({ length: n }, (_, i) => `m${i}`)

  test('fanout 1 is a chain', () => {
    const ms = members(5)
    const t = planTree('S', ms, 1)
    checkTreeInvariants(t, 'S', ms)
    assert.deepEqual(t.children.get('S'), ['m0'])
    for (let i = 0; i < 4; i++) {
      assert.deepEqual(t.children.get(`m${i}`), [`m${i + 1}`])
      assert.equal(t.parent.get(`m${i + 1}`), `m${i}`)
    }
    assert.deepEqual(t.children.get('m4'), [])
    assert.deepEqual(subtreeOf(t, 'm2'), ['m3', 'm4'])
  })

  test('fanout 2 is a binary heap layout', () => {
    const ms = members(8)
    const t = planTree('S', ms, 2)
    checkTreeInvariants(t, 'S', ms)
    assert.deepEqual(t.children.get('S'), ['m0', 'm1'])
    assert.deepEqual(t.children.get('m0'), ['m2', 'm3'])
    assert.deepEqual(t.children.get('m1'), ['m4', 'm5'])
    assert.deepEqual(t.children.get('m2'), ['m6', 'm7'])
    for (const leaf of ['m3', 'm4', 'm5', 'm6', 'm7']) assert.deepEqual(t.children.get(leaf), [])
    assert.deepEqual(new Set(subtreeOf(t, 'm0')), new Set(['m2', 'm3', 'm6', 'm7']))
    assert.deepEqual(new Set(subtreeOf(t, 'm1')), new Set(['m4', 'm5']))
    assert.deepEqual(subtreeOf(t, 'm7'), [])
  })

  test('fanout ≥ members is a star; no members is a lone root', () => {
    const ms = members(3)
    const star = planTree('S', ms, 3)
    checkTreeInvariants(star, 'S', ms)
    assert.deepEqual(star.children.get('S'), ms)
    const big = planTree('S', ms, 100)
    assert.deepEqual(big.children.get('S'), ms)
    const lone = planTree('S', [], 2)
    assert.deepEqual(lone.children.get('S'), [])
    assert.equal(lone.parent.size, 0)
    assert.deepEqual(subtreeOf(lone, 'S'), [])
  })

  test('invariants for many sizes and fanouts', () => {
    for (let n = 0; n <= 40; n += 3) {
      for (const f of [1, 2, 3, 4, 7]) {
        const ms = members(n)
        const t = planTree('S', ms, f)
        checkTreeInvariants(t, 'S', ms)
        for (const kids of t.children.values()) assert.ok(kids.length <= f)
      }
    }
  })

  test('subtreeOf an unknown node is empty', () => {
    assert.deepEqual(subtreeOf(planTree('S', ['a'], 1), 'nope'), [])
  })

  test('bad fanout and duplicate members throw PlanError', () => {
    for (const f of [0, -1, 1.5, NaN, Infinity]) {
      assert.throws(() => planTree('S', ['a'], f), PlanError, `fanout ${f}`)
    }
    assert.throws(() => planTree('S', ['a', 'b', 'a'], 2), PlanError)
    assert.throws(() => planTree('S', ['a', 'S'], 2), PlanError)
  })
})
