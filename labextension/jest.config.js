// Unit tests of the pure modules (format.ts, request.ts); JupyterLab packages are mocked.
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/src'],
  testMatch: ['**/__tests__/**/*.spec.ts'],
  transform: {
    '^.+\\.ts$': [
      'ts-jest',
      {
        tsconfig: {
          module: 'commonjs',
          composite: false,
          declaration: false,
          incremental: false
        }
      }
    ]
  }
};
