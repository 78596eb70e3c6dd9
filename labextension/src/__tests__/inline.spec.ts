import { inlineParts } from '../inline';

describe('inlineParts', () => {
  it('splits plain text and code spans', () => {
    expect(
      inlineParts('unused: `jupyter mlcontainer prune` removes it')
    ).toEqual([
      { code: false, text: 'unused: ' },
      { code: true, text: 'jupyter mlcontainer prune' },
      { code: false, text: ' removes it' }
    ]);
  });

  it('keeps text without backticks whole', () => {
    expect(inlineParts('Pull complete')).toEqual([
      { code: false, text: 'Pull complete' }
    ]);
    expect(inlineParts('')).toEqual([]);
  });

  it('handles spans at both ends and several spans', () => {
    expect(inlineParts('`a` and `b`')).toEqual([
      { code: true, text: 'a' },
      { code: false, text: ' and ' },
      { code: true, text: 'b' }
    ]);
  });

  it('leaves an unpaired or empty backtick pair as text', () => {
    expect(inlineParts("it's `half")).toEqual([
      { code: false, text: "it's `half" }
    ]);
    expect(inlineParts('an `` empty')).toEqual([
      { code: false, text: 'an `` empty' }
    ]);
  });

  it('never interprets HTML: markup stays text', () => {
    expect(inlineParts('<img src=x onerror=alert(1)> `<b>`')).toEqual([
      { code: false, text: '<img src=x onerror=alert(1)> ' },
      { code: true, text: '<b>' }
    ]);
  });
});
