/** Jest: ts-jest transpiles only (tsc --noEmit does the type check in `npm test`). */
module.exports = {
  testEnvironment: "node",
  roots: ["<rootDir>/test"],
  testMatch: ["**/*.test.ts"],
  transform: { "^.+\\.ts$": ["ts-jest", { diagnostics: false, tsconfig: { isolatedModules: true } }] },
  testTimeout: 120000,
  reporters: ["default", "<rootDir>/test/summaryReporter.js"],
  // Dynamic-provider code is serialized into Pulumi state: coverage counters must not leak into it.
  coveragePathIgnorePatterns: ["/node_modules/", "/providers/"],
};
