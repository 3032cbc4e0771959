/*
Copyright The vk8s Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

// Package election starts a leader election without waiting for a holder that is gone.
//
// client-go's elector trusts only its own clock: a process that starts while a Lease
// names a holder waits a whole lease duration from its first look, however long ago the
// holder last renewed. After an outage of every replica, that is one more lease duration
// (12 s for the provider) with nothing running. TakeOverStale reads the Lease's age on the
// API server's clock alone (the time of its last write, managedFields, against the Date
// of the response) and clears the holder of a Lease nobody has written for longer than
// its duration: such a holder has stepped down already (a leader stops after its renew
// deadline, shorter than the lease), so the elector may acquire at once.
package election
