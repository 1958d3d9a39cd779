import { render } from "preact";
import { useState } from "preact/hooks";
import { TaskList } from "./tasks.jsx";

function App() {
  const [count, setCount] = useState(0);
  return (
    <main>
      <h1>Built by kiln</h1>
      <p>
        This page was bundled in a builder stage whose only network access was a
        pinned <code>npm ci</code>, and is served by nginx.
      </p>
      <button onClick={() => setCount(count + 1)}>clicked {count} times</button>
      <TaskList />
    </main>
  );
}

render(<App />, document.getElementById("root"));
