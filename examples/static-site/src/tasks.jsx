import { useState } from "preact/hooks";

const initial = ["parse the Dockerfile", "pin the fetch steps", "build offline"];

export function TaskList() {
  const [tasks, setTasks] = useState(initial);
  const [text, setText] = useState("");
  const add = (e) => {
    e.preventDefault();
    if (text.trim()) {
      setTasks([...tasks, text.trim()]);
      setText("");
    }
  };
  return (
    <section>
      <h2>Tasks</h2>
      <ul>
        {tasks.map((t) => (
          <li key={t}>{t}</li>
        ))}
      </ul>
      <form onSubmit={add}>
        <input value={text} onInput={(e) => setText(e.currentTarget.value)} />
        <button type="submit">add</button>
      </form>
    </section>
  );
}
