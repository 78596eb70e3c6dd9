"""The names and numbers the server and the agent in the container agree on.

Shipped into the container at the top of every agent program (see ``program`` in this
package): standard library only, no imports, plain assignments.
"""

#: Where the container's own files live (connection file, HOME).
CONTAINER_DIR = "/tmp/mlcontainer"
CONTAINER_CONNECTION_FILE = CONTAINER_DIR + "/connection.json"
CONTAINER_HOME = CONTAINER_DIR + "/home"
#: Where kernels see an injected runtime (a read-only volume).
RUNTIME_DIR = "/opt/mlcontainer/runtime"

# --- environment variables the server sets, read (and removed) by the bootstrap ----------
#: The injected runtime's folder, appended to sys.path (the image's packages win).
ENV_RUNTIME = "JUPYTER_MLCONTAINER_RUNTIME"
#: The digest the runtime had when it was sealed; checked before anything is imported.
ENV_RUNTIME_DIGEST = "JUPYTER_MLCONTAINER_RUNTIME_DIGEST"
#: Set when HOME is a persistent volume: the kernel's user must be able to write it.
ENV_HOME_CHECK = "JUPYTER_MLCONTAINER_HOME_CHECK"
#: The connection file's content (saves copying a file in before the start).
ENV_CONNECTION = "JUPYTER_MLCONTAINER_CONNECTION"
#: Where the lease watchdog listens ("tcp:HOST:PORT" or "unix:PATH") and after how many
#: seconds without a renewal it stops the kernel.
ENV_LEASE = "JUPYTER_MLCONTAINER_LEASE"
ENV_LEASE_TIMEOUT = "JUPYTER_MLCONTAINER_LEASE_TIMEOUT"
#: Run the kernel under the supervisor (value: modules to import first, "-" for none).
ENV_SUPERVISE = "JUPYTER_MLCONTAINER_SUPERVISE"
#: Set when the server connects to the container's own address: the kernel announces it.
ENV_ANNOUNCE = "JUPYTER_MLCONTAINER_ANNOUNCE"

# --- how the bootstrap ends when it refuses to start the kernel ----------------------------
#: The injected runtime does not match its seal (rebuilt by the server, then started again).
RUNTIME_MISMATCH = "jupyter-mlcontainer: the injected runtime does not match its seal"
RUNTIME_MISMATCH_EXIT = 97
#: HOME is a volume its user may not write (given to the user by the server, if it is ours).
HOME_NOT_WRITABLE = "jupyter-mlcontainer: the kernel's HOME volume is not writable by its user"
HOME_NOT_WRITABLE_EXIT = 96
#: A port the kernel was given is taken in its network namespace (the host's, for
#: ``network: host``: another process took it between its choice and the kernel's bind).
#: The server picks fresh ports and starts the kernel again.
PORT_TAKEN = "jupyter-mlcontainer: a port chosen for the kernel is taken"
PORT_TAKEN_EXIT = 98
#: What the watchdog prints when the lease ran out.
LEASE_EXPIRED = "jupyter-mlcontainer: no Jupyter process renewed this kernel's lease"

# --- the lease port: renewals and the supervisor's control connection ---------------------
#: A connection that sends this first asks for control: it gets a nonce of NONCE_BYTES and
#: answers HMAC-SHA256(kernel key, nonce); CONTROL_OK confirms. Any other byte renews the lease.
CONTROL = b"C"
NONCE_BYTES = 16
CONTROL_OK = b"k"
#: Commands (one byte each) on a control connection.
HOLD = b"H"  # the kernel's next exit is a restart: report "x<code>\n", keep the container
KILL = b"K"  # SIGKILL the kernel
TERMINATE = b"T"  # SIGTERM the kernel
INTERRUPT = b"I"  # SIGINT the kernel (backends that cannot signal a container: Swarm)
START = b"S"  # start a fresh kernel process, answered STARTED
STARTED = b"s"
EXITED = b"x"  # prefix of the exit report: b"x<code>\n"

# --- the image probe -----------------------------------------------------------------------
PROBE_MARKER = "MLCONTAINER-PROBE "
