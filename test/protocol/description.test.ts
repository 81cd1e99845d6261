import { describe, expect, it } from 'vitest';
import type { Direction } from '../../src/config/types.js';
import { compareSides, decodeDescription, type SideDescription } from '../../src/protocol/description.js';

function side(instance: string, mode: 'active' | 'passive', fields: [number, Direction, ('value' | 'user')?][], deletes = true): SideDescription {
  return {
    protocol: 1,
    instance,
    sync: 'hq',
    mode,
    conflicts: 'newest-wins',
    users: 'login',
    tables: [{ number: 1, deletes, fields: fields.map(([number, direction, type]) => ({ number, direction, type: type ?? 'value' })) }],
  };
}

const findings = (ours: SideDescription, theirs: SideDescription): string[] =>
  compareSides(ours, theirs).map((f) => `${f.status} ${f.subject}: ${f.detail}`);

describe('comparing both sides of a sync', () => {
  it('agrees when numbers and directions fit', () => {
    expect(findings(side('east', 'active', [[2, 'both'], [3, 'upload']]), side('hq', 'passive', [[2, 'both'], [3, 'download']]))).toEqual([
      'ok numbers: tables, fields and directions agree with hq',
    ]);
  });

  it('finds a field that travels nowhere or that nobody takes', () => {
    expect(findings(side('east', 'active', [[2, 'upload'], [3, 'download']]), side('hq', 'passive', [[2, 'upload'], [3, 'download']]))).toEqual([
      "error table 1 field 2: upload here, upload on the peer: both sides send and neither takes the other's value",
      'error table 1 field 3: download here, download on the peer: neither side sends, so nothing travels',
    ]);
  });

  it('finds numbers the other side does not know, in both directions', () => {
    expect(findings(side('east', 'active', [[2, 'both'], [4, 'both']]), side('hq', 'passive', [[2, 'both'], [5, 'upload']]))).toEqual([
      'error table 1 field 4: the peer does not know this field number: our batches would be refused',
      'error table 1 field 5: the peer sends this field number, which we do not know: its batches would be refused',
    ]);
  });

  it('finds a missing status column, two sides of one role, different conflict rules and types', () => {
    const ours = side('east', 'active', [[2, 'both', 'user']]);
    const theirs = { ...side('hq', 'active', [[2, 'both', 'value']], false), conflicts: 'manual' as const };
    expect(findings(ours, theirs)).toEqual([
      'error roles: both sides are active; one side must be active and the other passive',
      'error conflicts: we decide conflicts by newest-wins, the peer by manual: the two sides would keep different values',
      'warn table 1: the peer has no status column: our deletes will not reach it',
      'error table 1 field 2: it is a user field here and a value field on the peer',
    ]);
  });

  it('warns of legitimate but one-sided directions and paused fields', () => {
    expect(findings(side('east', 'active', [[2, 'both'], [3, 'off'], [4, 'both']]), side('hq', 'passive', [[2, 'upload'], [3, 'both'], [4, 'download']]))).toEqual([
      "warn table 1 field 2: both here, upload on the peer: the peer ignores our changes",
      'warn table 1 field 3: off here, both on the peer: paused',
    ]);
    // Both here, download on the peer: we send, it takes, it never sends: one-way, as configured.
  });

  it('reads only descriptions it understands', () => {
    expect(decodeDescription(Buffer.from(JSON.stringify(side('hq', 'passive', [[2, 'both']]))))).toMatchObject({ instance: 'hq' });
    expect(decodeDescription(Buffer.from('{"protocol":1}'))).toBeUndefined();
    expect(decodeDescription(Buffer.from('not json'))).toBeUndefined();
  });
});
