// An empty Pulumi program run the default TypeScript way (see Pulumi.yaml): a reference row of `npm run bench`.
export {};
