// An empty Pulumi program: `npm run bench` measures the engine's own `up` of it as the floor.
export {};
