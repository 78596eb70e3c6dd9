import {
  extendBody,
  extendResult,
  IExtendState,
  IVersions,
  recordedDiffers,
  versionLine,
  versionSummary
} from '../environments';

const versions: IVersions = {
  name: 'python-3.11',
  current: 2,
  versions: [
    {
      number: 1,
      image: 'sha256:aaa',
      image_id: 'sha256:aaa',
      created: '2026-12-01T10:00:00Z',
      author: 'ada'
    },
    {
      number: 2,
      image: 'reg/py@sha256:bbb',
      image_id: 'sha256:bbb',
      created: '2026-12-02T11:30:00Z',
      author: 'bob',
      added: ['tqdm==4.66.5'],
      apt: ['graphviz'],
      parent: 1
    }
  ]
};

describe('extendBody', () => {
  it('takes requirement lines, without blanks and comments, and apt names', () => {
    expect(
      extendBody(
        ' tqdm==4.66.5 \n\n# a comment\nrich>=13  # pretty\n',
        'graphviz, curl\nvim'
      )
    ).toEqual({
      pip: ['tqdm==4.66.5', 'rich>=13'],
      apt: ['graphviz', 'curl', 'vim']
    });
  });

  it('is empty for empty fields', () => {
    expect(extendBody('', '  ')).toEqual({ pip: [], apt: [] });
  });
});

describe('versions', () => {
  it('summarises what a version added', () => {
    expect(versionSummary(versions.versions[0])).toBe('as added');
    expect(versionSummary(versions.versions[1])).toBe(
      '+ tqdm==4.66.5, apt: graphviz'
    );
    expect(versionSummary({ number: 3, image: 'x', parent: 2 })).toBe(
      '(nothing added)'
    );
  });

  it('marks the current version', () => {
    expect(versionLine(versions.versions[1], 2)).toBe(
      '● v2 · 2026-12-02 11:30 · bob · + tqdm==4.66.5, apt: graphviz'
    );
    expect(versionLine(versions.versions[0], 2)).toBe(
      'v1 · 2026-12-01 10:00 · ada · as added'
    );
  });
});

describe('recordedDiffers', () => {
  const record = {
    image: 'sha256:aaa',
    image_id: 'sha256:aaa',
    kernel_name: 'python-3.11',
    version: 1
  };

  it('says which version the notebook was run with', () => {
    const differs = recordedDiffers(record, 'python-3.11', versions);
    expect(differs?.recorded?.number).toBe(1);
    expect(differs?.image).toBe('sha256:aaa');
    expect(differs?.text).toBe(
      'This notebook was last run with version 1 of python-3.11; the kernel is now at version 2.'
    );
  });

  it('is silent when the record is the current version', () => {
    expect(
      recordedDiffers({ ...record, version: 2 }, 'python-3.11', versions)
    ).toBeNull();
    // no version number (an older record): by its image
    expect(
      recordedDiffers(
        { image: 'reg/py@sha256:bbb', kernel_name: 'python-3.11' },
        'python-3.11',
        versions
      )
    ).toBeNull();
  });

  it('finds the version by image when the record has no number', () => {
    const differs = recordedDiffers(
      { image: 'x:1', image_id: 'sha256:aaa', kernel_name: 'python-3.11' },
      'python-3.11',
      versions
    );
    expect(differs?.recorded?.number).toBe(1);
  });

  it('is silent with nothing recorded, or another kernel recorded', () => {
    expect(recordedDiffers(undefined, 'python-3.11', versions)).toBeNull();
    expect(recordedDiffers({}, 'python-3.11', versions)).toBeNull();
    expect(
      recordedDiffers(
        { ...record, kernel_name: 'other' },
        'python-3.11',
        versions
      )
    ).toBeNull();
  });

  it('names an image that is none of the versions', () => {
    const differs = recordedDiffers(
      { image: 'python:3.12', kernel_name: 'python-3.11' },
      'python-3.11',
      versions
    );
    expect(differs?.recorded).toBeNull();
    expect(differs?.text).toContain(
      'python:3.12, not a version of python-3.11'
    );
  });
});

describe('extendResult', () => {
  const base: IExtendState = {
    id: 'x',
    kernel_name: 'k',
    status: 'done',
    message: 'k is now version 2: + tqdm==4.66.5',
    version: null,
    packages: []
  };

  it('is the message, with the failing packages named', () => {
    expect(extendResult(base)).toBe('k is now version 2: + tqdm==4.66.5');
    expect(
      extendResult({
        ...base,
        status: 'error',
        message: 'Could not resolve nope==9',
        packages: ['nope==9']
      })
    ).toBe('Failed (nope==9): Could not resolve nope==9');
  });
});
