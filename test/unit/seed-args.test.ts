import { test, describe } from 'node:test'
import assert from 'node:assert/strict'
import { translateSeedArgs } from '../../cli/seed-args.js'
import { UsageError } from '../../cli/exit-codes.js'

describe('translateSeedArgs', () => {
  test('Go-style options become long options', () => {
    assert.deepEqual(
      translateSeedArgs(['-t=a,b', '-src=/x', '-dst=/y', '-d=true', '-z=false', '-o=true']),
      ['--targets=a,b', '--src=/x', '--dst=/y', '--delete'])
    assert.deepEqual(translateSeedArgs(['-z=true', '-n=true', '-d=false']), ['--compress', '--dry-run'])
    assert.deepEqual(translateSeedArgs(['-from=host', '-home=/h']), ['--from=host', '--home=/h'])
  })

  test('booleans are case-insensitive', () => {
    assert.deepEqual(translateSeedArgs(['-d=TRUE', '-z=True', '-n=FALSE']), ['--delete', '--compress'])
  })

  test('values are kept verbatim (quotes already removed by the shell, = and newlines inside)', () => {
    assert.deepEqual(translateSeedArgs(['-t=a=b', '-src=/with space/x', '-dst=', '-t=a\nb']), ['--targets=a=b', '--src=/with space/x', '--dst=', '--targets=a\nb'])
  })

  test('bad booleans are UsageErrors', () => {
    for (const a of ['-d=maybe', '-z=', '-n=1', '-o=yes', '-d=true ']) {
      assert.throws(() => translateSeedArgs([a]), UsageError, a)
    }
  })

  test('-o=false is refused', () => {
    assert.throws(() => translateSeedArgs(['-o=false']), (err: unknown) => err instanceof UsageError && /not supported/.test(err.message))
  })

  test('other arguments pass through untouched, in order', () => {
    const args = ['sync', '--delete', '-v', '--src=/a', '-x=1', '-t', 'a,b', '-T=1', '-Src=/x', '-', '--', '-d', 'plain', '-1=2']
    assert.deepEqual(translateSeedArgs(args), args)
    assert.deepEqual(translateSeedArgs(['a', '-d=true', 'b', '-src=/s', 'c']), ['a', '--delete', 'b', '--src=/s', 'c'])
    assert.deepEqual(translateSeedArgs([]), [])
  })

  // VALUE_FLAGS/BOOL_FLAGS are plain object literals, so `-constructor=x` finds
  // Object.prototype.constructor and is rewritten into "function Object() { [native code] }=x".
  test('names that exist on Object.prototype pass through untouched', () => {
    assert.deepEqual(translateSeedArgs(['-constructor=x']), ['-constructor=x'])
  })
})
