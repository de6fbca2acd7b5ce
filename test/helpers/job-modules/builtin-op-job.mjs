// Claims op 9, below the registered range: Engine.start must refuse it.
export const jobs = [{ op: 9, name: 'too-low', bind: () => () => 0 }];
